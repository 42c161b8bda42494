//go:build !unix

package coalesce

import "time"

// ProcessCPU is not known here: the caller then counts the process as
// using all its CPUs, so MinCPU never keeps it from being behind.
func ProcessCPU() (time.Duration, bool) { return 0, false }
