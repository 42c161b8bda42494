//go:build !unix

package bench

import "time"

func fdLimits() (soft, hard uint64) { return 0, 0 }

func ensureFDLimit(uint64) (uint64, error) { return 0, nil }

func cpuTime() time.Duration { return 0 }
