//go:build !linux

package coalesce

// CPUQuota is not known here.
func CPUQuota() (float64, bool) { return 0, false }
