//go:build !unix

package connlimit

func nofile() (uint64, bool) { return 0, false }
