package frontend

import (
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// quietTest starts a quiet listener on 127.0.0.1:0 with runnable and
// dials it once. held counts its holds; heldNow is closed at the first.
func quietTest(t *testing.T, runnable func() uint64, maxWait time.Duration, budget float64) (q *quietListener, held *atomic.Int32, heldNow chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	clock := func() int64 { return int64(time.Since(start)) }
	held, heldNow = new(atomic.Int32), make(chan struct{})
	q = &quietListener{Listener: ln, max: 2, maxWait: maxWait, runnable: runnable, clock: clock,
		onHeld: func() {
			if held.Add(1) == 1 {
				close(heldNow)
			}
		}, closed: make(chan struct{}), budget: bucket{tokens: budget, at: clock()}}
	t.Cleanup(func() { q.Close() })
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return q, held, heldNow
}

func acceptWithin(t *testing.T, q *quietListener) error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		c, err := q.Accept()
		if c != nil {
			c.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("Accept did not return")
		return nil
	}
}

// TestQuietAccept: an accepted connection is handed over at once while
// few goroutines are ready to run, held while more are, until they are
// served (or the hold's bound), not held once holds used up their share
// of the time, and given up when the listener closes.
func TestQuietAccept(t *testing.T) {
	t.Run("idle", func(t *testing.T) {
		q, held, _ := quietTest(t, func() uint64 { return 2 }, time.Hour, quietShare*1e9)
		if err := acceptWithin(t, q); err != nil || held.Load() != 0 {
			t.Fatalf("err %v, held %d; want an accept at once", err, held.Load())
		}
	})
	t.Run("until served", func(t *testing.T) {
		var looks atomic.Int32
		q, held, _ := quietTest(t, func() uint64 {
			if looks.Add(1) <= 4 {
				return 10
			}
			return 0
		}, time.Hour, quietShare*1e9)
		if err := acceptWithin(t, q); err != nil || held.Load() != 1 || looks.Load() < 5 {
			t.Fatalf("err %v, held %d, %d looks; want a hold until the run queue emptied", err, held.Load(), looks.Load())
		}
	})
	t.Run("bounded", func(t *testing.T) {
		q, held, _ := quietTest(t, func() uint64 { return 10 }, 20*time.Millisecond, quietShare*1e9)
		if err := acceptWithin(t, q); err != nil || held.Load() != 1 {
			t.Fatalf("err %v, held %d; want one hold, ended by its bound", err, held.Load())
		}
		if left := q.budget.peek(q.clock(), quietShare*1e9, quietShare*1e9); left >= quietShare*1e9 {
			t.Fatalf("the hold took nothing from the budget (%v ns left)", left)
		}
	})
	t.Run("share used up", func(t *testing.T) {
		q, held, _ := quietTest(t, func() uint64 { return 10 }, time.Hour, -1e9)
		if err := acceptWithin(t, q); err != nil || held.Load() != 0 {
			t.Fatalf("err %v, held %d; want no hold with the budget spent", err, held.Load())
		}
	})
	t.Run("closed while held", func(t *testing.T) {
		q, _, heldNow := quietTest(t, func() uint64 { return 10 }, time.Hour, quietShare*1e9)
		done := make(chan error, 1)
		go func() {
			_, err := q.Accept()
			done <- err
		}()
		select {
		case <-heldNow:
		case <-time.After(10 * time.Second):
			t.Fatal("the accept was not held")
		}
		q.Close()
		select {
		case err := <-done:
			if !errors.Is(err, net.ErrClosed) {
				t.Fatalf("Accept returned %v, want net.ErrClosed", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a held Accept did not end at Close")
		}
	})
}

// BenchmarkRunnableGoroutines is what SCC_ACCEPT_RUNNABLE_MAX costs an
// accept that is not held: one read of the runtime's count.
func BenchmarkRunnableGoroutines(b *testing.B) {
	for range b.N {
		runnableGoroutines()
	}
}
