package bench

import (
	"math/rand/v2"
	"testing"
	"time"
)

func observeSeqs(c *Checker, pub int, ch string, seqs ...uint64) {
	for _, s := range seqs {
		c.Observe(ch, EncodePayload(pub, s, time.Now(), 0), time.Now())
	}
}

func TestCheckerCounts(t *testing.T) {
	c := NewChecker()
	// 1..10 expected; 4 lost, 6 duplicated, 9 before 8, 12 unexpected.
	c.ExpectRange(1, "a", 1, 10)
	observeSeqs(c, 1, "a", 1, 2, 3, 5, 6, 6, 7, 9, 8, 10, 12)
	c.Observe("a", []byte(`"hello"`), time.Now())
	r := c.Result()
	want := CheckResult{Expected: 10, Received: 11, Lost: 1, Duplicated: 1, OutOfOrder: 1, Unexpected: 1, Malformed: 1}
	if r.Expected != want.Expected || r.Received != want.Received || r.Lost != want.Lost ||
		r.Duplicated != want.Duplicated || r.OutOfOrder != want.OutOfOrder ||
		r.Unexpected != want.Unexpected || r.Malformed != want.Malformed {
		t.Fatalf("got %+v, want %+v", r, want)
	}
	if len(r.Streams) != 1 || r.Streams[0].Channel != "a" || r.Streams[0].Lost != 1 {
		t.Fatalf("streams: %+v", r.Streams)
	}
	if r.OK() {
		t.Fatal("OK with problems")
	}
	if r.Latency == nil || r.Latency.Count != 11 {
		t.Fatalf("latency: %+v", r.Latency)
	}
	if m := c.Missing(); m != 1 {
		t.Fatalf("missing %d", m)
	}
}

func TestCheckerStreamsAreIndependent(t *testing.T) {
	c := NewChecker()
	for pub := range 3 {
		for _, ch := range []string{"x", "y"} {
			c.ExpectRange(pub, ch, 1, 100)
			for s := uint64(1); s <= 100; s++ {
				observeSeqs(c, pub, ch, s)
			}
		}
	}
	r := c.Result()
	if !r.OK() || r.Expected != 600 || r.Received != 600 || len(r.Streams) != 0 {
		t.Fatalf("got %+v", r)
	}
}

// TestCheckerAgainstModel checks random delivery orders against a plain
// map-based model, across the bitset's word boundaries and compaction.
func TestCheckerAgainstModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 50 {
		c := NewChecker()
		n := uint64(1 + rng.IntN(700))
		seen := map[uint64]bool{}
		var maxSeq uint64
		var recv, dup, ooo int64
		var seqs []uint64
		for s := uint64(1); s <= n+20; s++ {
			switch rng.IntN(20) {
			case 0: // lost
			case 1: // duplicated
				seqs = append(seqs, s, s)
			default:
				seqs = append(seqs, s)
			}
		}
		// Swap some neighbours.
		for i := 0; i+1 < len(seqs); i++ {
			if rng.IntN(15) == 0 {
				seqs[i], seqs[i+1] = seqs[i+1], seqs[i]
			}
		}
		for _, s := range seqs {
			recv++
			if seen[s] {
				dup++
			} else {
				if s < maxSeq {
					ooo++
				}
				maxSeq = max(maxSeq, s)
				seen[s] = true
			}
		}
		observeSeqs(c, 0, "ch", seqs...)
		// Expect 1..n in two overlapping pieces and single numbers.
		c.ExpectRange(0, "ch", n/2, n)
		for s := uint64(1); s <= n/2; s++ {
			c.Expect(0, "ch", s)
		}
		var lost, unexpected int64
		for s := uint64(1); s <= n; s++ {
			if !seen[s] {
				lost++
			}
		}
		for s := range seen {
			if s > n {
				unexpected++
			}
		}
		r := c.Result()
		if r.Expected != int64(n) || r.Received != recv || r.Lost != lost || r.Duplicated != dup ||
			r.OutOfOrder != ooo || r.Unexpected != unexpected {
			t.Fatalf("round %d n=%d: got %+v, want exp=%d recv=%d lost=%d dup=%d ooo=%d unexp=%d",
				round, n, r, n, recv, lost, dup, ooo, unexpected)
		}
		if c.Missing() != lost {
			t.Fatalf("round %d: missing %d, want %d", round, c.Missing(), lost)
		}
	}
}

func TestCheckResultMerge(t *testing.T) {
	a, b := NewChecker(), NewChecker()
	a.ExpectRange(1, "a", 1, 3)
	b.ExpectRange(1, "a", 1, 3)
	b.ExpectRange(2, "b", 1, 2)
	observeSeqs(a, 1, "a", 1, 3)
	observeSeqs(b, 1, "a", 1, 2, 3, 3)
	observeSeqs(b, 2, "b", 2, 1)
	r := a.Result()
	r.Merge(b.Result())
	if r.Expected != 8 || r.Received != 8 || r.Lost != 1 || r.Duplicated != 1 || r.OutOfOrder != 1 {
		t.Fatalf("got %+v", r)
	}
	if len(r.Streams) != 2 || r.Streams[0].Lost != 1 || r.Streams[0].Duplicated != 1 || r.Streams[1].OutOfOrder != 1 {
		t.Fatalf("streams %+v", r.Streams)
	}
}

func TestCheckerReset(t *testing.T) {
	c := NewChecker()
	c.Expect(1, "a", 1)
	observeSeqs(c, 1, "a", 2)
	c.Reset()
	if r := c.Result(); r.Expected != 0 || r.Received != 0 || !r.OK() {
		t.Fatalf("after reset: %+v", r)
	}
}

func TestHistJSONRoundTrip(t *testing.T) {
	h := NewHist()
	for i := range 1000 {
		h.Record(time.Duration(i) * time.Millisecond)
	}
	b, err := h.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	var g Hist
	if err := g.UnmarshalJSON(b); err != nil {
		t.Fatal(err)
	}
	if g.Summary() != h.Summary() {
		t.Fatalf("got %+v, want %+v", g.Summary(), h.Summary())
	}
	m := NewHist()
	m.Merge(h)
	m.Merge(&g)
	if m.Count() != 2000 || m.Summary().P99 != h.Summary().P99 {
		t.Fatalf("merged %+v", m.Summary())
	}
}

func BenchmarkCheckerObserve(b *testing.B) {
	c := NewChecker(WithObserver(func(Payload, time.Time) {}))
	bufs := make([][]byte, 1024)
	for i := range bufs {
		bufs[i] = EncodePayload(1, uint64(i+1), time.Now(), 64)
	}
	now := time.Now()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		c.Observe("ch", bufs[i%len(bufs)], now)
		i++
	}
}
