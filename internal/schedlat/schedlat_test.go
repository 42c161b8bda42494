package schedlat

import (
	"runtime"
	"sync"
	"testing"
	"time"
)

// With more runnable goroutines than Ps, each spinning for a while, the
// ones queued behind wait about as long as the ones ahead run: the
// sampled p99 shows it. Left idle, the next sample has few or none.
func TestSampleSeesQueuedGoroutines(t *testing.T) {
	prev := runtime.GOMAXPROCS(1)
	defer runtime.GOMAXPROCS(prev)
	s := New()
	var wg sync.WaitGroup
	for range 200 {
		wg.Go(func() {
			for range 3 {
				spin(2 * time.Millisecond)
				runtime.Gosched()
			}
		})
	}
	wg.Wait()
	p99, n := s.Sample(0.99)
	if n == 0 {
		t.Fatal("no scheduling latency recorded")
	}
	if p99 < 10*time.Millisecond {
		t.Fatalf("p99 %v over %d samples with 200 goroutines spinning 2 ms each on one P, want at least 10ms", p99, n)
	}
	if p50, _ := s.Sample(0.5); p50 >= p99 {
		t.Fatalf("the next interval's p50 %v is not below the busy one's p99 %v", p50, p99)
	}
}

func spin(d time.Duration) {
	end := time.Now().Add(d)
	for time.Now().Before(end) {
	}
}
