//go:build !linux

package bench

import (
	"errors"
	"time"
)

func cpuAffinity() string { return "" }

func processCPU(int) (time.Duration, error) { return 0, errors.New("not supported") }

func machineBusy() (time.Duration, error) { return 0, errors.New("not supported") }
