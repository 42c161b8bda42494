//go:build !linux

package frontend

import (
	"errors"
	"net"
)

func setBacklog(net.Listener, int) error { return errors.New("not supported on this system") }

func listenQueueLen(net.Listener) int { return 0 }

func listenOverflows() float64 { return 0 }
