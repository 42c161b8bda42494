//go:build unix

package bench

import (
	"fmt"
	"syscall"
	"time"
)

func fdLimits() (soft, hard uint64) {
	var r syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r) != nil {
		return 0, 0
	}
	return uint64(r.Cur), uint64(r.Max)
}

// ensureFDLimit raises the soft open-file limit towards need (up to the
// hard limit) and returns the resulting limit, or an error saying the
// limit is too low for need.
func ensureFDLimit(need uint64) (uint64, error) {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 0, nil // unknown: let EMFILE speak if it happens
	}
	if uint64(r.Cur) < need && r.Cur < r.Max {
		want := r
		want.Cur = min(r.Max, max(need, r.Cur))
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want) == nil {
			r = want
		}
	}
	if uint64(r.Cur) < need {
		return uint64(r.Cur), fmt.Errorf("%w: this process needs about %d file descriptors but the open-file limit is %d (hard %d); raise it with `ulimit -n %d` or spread the connections with -procs",
			errFDLimit, need, r.Cur, r.Max, need)
	}
	return uint64(r.Cur), nil
}

// cpuTime returns the CPU time this process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
