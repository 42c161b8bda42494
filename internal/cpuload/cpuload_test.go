package cpuload

import (
	"runtime"
	"testing"
	"time"
)

const stat = `cpu  100 0 50 1000 10 0 5 0 0 0
cpu0 60 0 30 400 5 0 5 0 0 0
cpu1 40 0 20 600 5 0 0 0 0 0
intr 12345
`

func TestParseStat(t *testing.T) {
	busy, total, err := parseStat([]byte(stat), nil)
	if err != nil || busy != 155 || total != 1165 {
		t.Fatalf("all CPUs: busy %d total %d err %v", busy, total, err)
	}
	busy, total, err = parseStat([]byte(stat), func(cpu int) bool { return cpu == 1 })
	if err != nil || busy != 60 || total != 665 {
		t.Fatalf("cpu1: busy %d total %d err %v", busy, total, err)
	}
	for _, bad := range []string{"", "intr 1\n", "cpu0 1 2 x 4 5\n", "cpu0 1 2\n"} {
		if _, _, err := parseStat([]byte(bad), nil); err == nil {
			t.Errorf("parseStat(%q) accepted", bad)
		}
	}
}

func TestSamplerSeesBusyCPU(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("per-CPU counters are read from /proc/stat")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	s, err := New()
	if err != nil {
		t.Fatal(err)
	}
	// Spin on one CPU until the kernel's counters (10ms ticks) have moved:
	// the busy share can then not be zero.
	deadline := time.Now().Add(5 * time.Second)
	var load float64
	for time.Now().Before(deadline) {
		for start := time.Now(); time.Since(start) < 50*time.Millisecond; {
		}
		if load, err = s.Sample(); err != nil {
			t.Fatal(err)
		}
		if load > 0 {
			break
		}
	}
	if load <= 0 || load > 1 {
		t.Fatalf("busy share %v while spinning", load)
	}
}
