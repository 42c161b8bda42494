//go:build !linux

package bench

func cpuAffinity() string { return "" }
