//go:build !linux

package netpoll

import "syscall"

// Poller is unavailable on this platform; New returns ErrUnsupported.
type Poller struct{ t table }

// New returns ErrUnsupported.
func New() (*Poller, error) { return nil, ErrUnsupported }

// Run returns at once.
func (p *Poller) Run() {}

// Close does nothing.
func (p *Poller) Close() error { return nil }

// Arm returns ErrUnsupported.
func (p *Poller) Arm(*Handle, syscall.RawConn, Waker) error { return ErrUnsupported }

// Release does nothing.
func (p *Poller) Release(*Handle, syscall.RawConn) {}
