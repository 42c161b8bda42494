//go:build !linux

package cpuload

// New returns ErrUnsupported: only Linux's /proc/stat is read.
func New() (*Sampler, error) { return nil, ErrUnsupported }
