package connlimit

import "math"

// fallbackMax is the cap when the descriptor limit cannot be read.
const fallbackMax = 10000

// DefaultMax derives a connection cap from the process's descriptor limit
// (RLIMIT_NOFILE, soft): it leaves a tenth of the limit, and at least 64,
// for files, listeners, gossip and outbound links, and the reserve on top
// of the cap. It is at least 1.
func DefaultMax(reserve int) int {
	n, ok := nofile()
	if !ok || n == 0 {
		return fallbackMax
	}
	if n > math.MaxInt32 {
		n = math.MaxInt32
	}
	return capFor(int(n), reserve)
}

func capFor(nofile, reserve int) int {
	headroom := max(64, nofile/10)
	return max(1, nofile-headroom-reserve)
}
