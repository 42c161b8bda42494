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
	return max(1, nofile-headroomFor(nofile)-reserve)
}

// headroomFor is the descriptors DefaultMax leaves beside the cap.
func headroomFor(nofile int) int { return max(64, nofile/10) }

// Headroom is how many descriptors DefaultMax leaves for everything but
// the connections it counts (files, listeners, outbound links, the
// reserve): a tenth of RLIMIT_NOFILE, at least 64 (fallbackMax's tenth
// when the limit cannot be read).
func Headroom() int {
	n, ok := nofile()
	if !ok || n == 0 {
		return fallbackMax / 10
	}
	if n > math.MaxInt32 {
		n = math.MaxInt32
	}
	return headroomFor(int(n))
}
