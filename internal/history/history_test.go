package history

import (
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newStore(t testing.TB, mod func(*Config)) (*Store, *clock) {
	t.Helper()
	c := &clock{t: time.Unix(1000, 0)}
	cfg := DefaultConfig()
	cfg.Now = c.now
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s, c
}

var opts10 = Options{Size: 10, TTL: time.Minute}

func offsets(ps []Pub) []uint64 {
	out := make([]uint64, len(ps))
	for i, p := range ps {
		out[i] = p.Offset
	}
	return out
}

func TestAppendOffsetsAndEpoch(t *testing.T) {
	s, _ := newStore(t, nil)
	var epoch string
	for i := 1; i <= 25; i++ {
		p := s.Append("a", opts10, []byte(fmt.Sprint(i)), nil)
		if p.Offset != uint64(i) {
			t.Fatalf("append %d: offset %d", i, p.Offset)
		}
		if epoch == "" {
			epoch = p.Epoch
		}
		if p.Epoch != epoch || len(p.Epoch) != 8 {
			t.Fatalf("epoch %q then %q", epoch, p.Epoch)
		}
	}
	if b := s.Append("b", opts10, nil, nil); b.Offset != 1 || b.Epoch == epoch {
		t.Fatalf("second channel: %+v (first epoch %q)", b, epoch)
	}
	if p := s.Append("off", Options{}, []byte("x"), nil); p != (Position{}) {
		t.Fatalf("history off stored: %+v", p)
	}
	if _, ok := s.Position("off"); ok {
		t.Fatal("history off created a stream")
	}
	st := s.Stats()
	if st.Streams != 2 || st.Publications != 11 || st.Evicted[EvictSize] != 15 {
		t.Fatalf("stats %+v", st)
	}
}

func TestSince(t *testing.T) {
	s, _ := newStore(t, nil)
	var pos Position
	for i := 0; i < 15; i++ {
		pos = s.Append("a", opts10, []byte{byte(i)}, nil)
	}
	ep := pos.Epoch
	cases := []struct {
		name   string
		from   Position
		limit  int
		want   []uint64
		ok     bool
		reason string
	}{
		{"no recovery asked", Position{Offset: 3}, 100, nil, false, ReasonNone},
		{"up to date", Position{15, ep}, 100, nil, true, ReasonNone},
		{"missed 3", Position{12, ep}, 100, []uint64{13, 14, 15}, true, ReasonNone},
		{"missed all retained", Position{5, ep}, 100, []uint64{6, 7, 8, 9, 10, 11, 12, 13, 14, 15}, true, ReasonNone},
		{"missed evicted", Position{4, ep}, 100, nil, false, ReasonGone},
		{"other epoch", Position{12, "zzzzzzzz"}, 100, nil, false, ReasonEpoch},
		{"ahead", Position{16, ep}, 100, nil, false, ReasonAhead},
		{"over limit", Position{12, ep}, 2, nil, false, ReasonLimit},
		{"at limit", Position{13, ep}, 2, []uint64{14, 15}, true, ReasonNone},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := s.Since("a", opts10, c.from, c.limit, nil)
			if r.Recovered != c.ok || r.Reason != c.reason || fmt.Sprint(offsets(r.Pubs)) != fmt.Sprint(c.want) {
				t.Fatalf("got recovered=%v reason=%q %v, want %v %q %v", r.Recovered, r.Reason, offsets(r.Pubs), c.ok, c.reason, c.want)
			}
			if r.Position != pos {
				t.Fatalf("position %+v, want %+v", r.Position, pos)
			}
			for _, p := range r.Pubs {
				if p.Data[0] != byte(p.Offset-1) {
					t.Fatalf("offset %d holds %d", p.Offset, p.Data[0])
				}
			}
		})
	}
	if r := s.Since("a", Options{}, Position{12, ep}, 100, nil); r.Recovered || r.Reason != ReasonDisabled {
		t.Fatalf("disabled: %+v", r)
	}
}

func TestSinceCreatesStream(t *testing.T) {
	s, _ := newStore(t, nil)
	r := s.Since("new", opts10, Position{}, 10, nil)
	if r.Position.Epoch == "" || r.Position.Offset != 0 {
		t.Fatalf("position %+v", r.Position)
	}
	p := s.Append("new", opts10, []byte("x"), nil)
	if p.Epoch != r.Position.Epoch || p.Offset != 1 {
		t.Fatalf("append after since: %+v", p)
	}
	r2 := s.Since("new", opts10, r.Position, 10, nil)
	if !r2.Recovered || len(r2.Pubs) != 1 {
		t.Fatalf("recover from the subscribe's position: %+v", r2)
	}
}

func TestTTLKeepsEpochAndOffset(t *testing.T) {
	s, c := newStore(t, func(c *Config) { c.MetaTTL = time.Hour })
	var pos Position
	for i := 0; i < 5; i++ {
		pos = s.Append("a", opts10, []byte("x"), nil)
	}
	c.add(2 * time.Minute) // past history.ttl, within MetaTTL
	s.Sweep()
	if n := s.Stats().Publications; n != 0 {
		t.Fatalf("%d publications after ttl", n)
	}
	if got := s.Evicted(EvictTTL); got != 5 {
		t.Fatalf("ttl evictions %d", got)
	}
	if r := s.Since("a", opts10, pos, 10, nil); !r.Recovered {
		t.Fatalf("up-to-date subscriber not recovered after ttl: %+v", r)
	}
	if r := s.Since("a", opts10, Position{3, pos.Epoch}, 10, nil); r.Recovered || r.Reason != ReasonGone {
		t.Fatalf("missed expired publications: %+v", r)
	}
	if p := s.Append("a", opts10, []byte("y"), nil); p.Offset != 6 || p.Epoch != pos.Epoch {
		t.Fatalf("after ttl: %+v, before %+v", p, pos)
	}
	c.add(2 * time.Hour)
	s.Sweep()
	if s.Evicted(EvictMetaTTL) != 1 || s.Stats().Streams != 0 {
		t.Fatalf("meta ttl: %+v", s.Stats())
	}
	if r := s.Since("a", opts10, pos, 10, nil); r.Recovered || r.Reason != ReasonEpoch {
		t.Fatalf("after the stream was lost: %+v", r)
	}
}

func TestTTLExpiresOnReadWithoutSweep(t *testing.T) {
	s, c := newStore(t, nil)
	for i := 0; i < 3; i++ {
		s.Append("a", opts10, []byte("x"), nil)
	}
	pos, _ := s.Position("a")
	c.add(2 * time.Minute)
	if r := s.Since("a", opts10, Position{1, pos.Epoch}, 10, nil); r.Recovered {
		t.Fatalf("expired publications replayed: %+v", r)
	}
}

func TestBudgetEvictsLeastRecentFirst(t *testing.T) {
	per := int64(PubOverhead + 100)
	// One shard, room for 2 streams and 10 publications of 100 bytes.
	s, _ := newStore(t, func(c *Config) {
		c.Shards = 1
		c.MaxBytes = 2*(StreamOverhead+1) + 10*per
	})
	data := make([]byte, 100)
	for i := 0; i < 6; i++ {
		s.Append("a", opts10, data, nil)
	}
	for i := 0; i < 6; i++ {
		s.Append("b", opts10, data, nil)
	}
	st := s.Stats()
	if st.Bytes > 2*(StreamOverhead+1)+10*per || st.Evicted[EvictBudget] != 2 {
		t.Fatalf("stats %+v", st)
	}
	pa, _ := s.Position("a")
	if r := s.Since("a", opts10, Position{0, pa.Epoch}, 10, nil); r.Recovered {
		t.Fatal("a's evicted publications recovered")
	}
	if r := s.Since("a", opts10, Position{2, pa.Epoch}, 10, nil); !r.Recovered || len(r.Pubs) != 4 {
		t.Fatalf("a's retained publications: %+v", r)
	}
	pb, _ := s.Position("b")
	if r := s.Since("b", opts10, Position{0, pb.Epoch}, 10, nil); !r.Recovered || len(r.Pubs) != 6 {
		t.Fatalf("b (most recent) lost publications: %+v", r)
	}
	// Many new streams: empty ones are dropped whole, counted.
	for i := 0; i < 20; i++ {
		s.Since(fmt.Sprint("c", i), opts10, Position{}, 0, nil)
	}
	if s.Evicted(EvictStream) == 0 || s.Stats().Bytes > 2*(StreamOverhead+1)+10*per {
		t.Fatalf("stream eviction: %+v", s.Stats())
	}
}

func TestPutKeepsOwnerOffsets(t *testing.T) {
	owner, _ := newStore(t, nil)
	standby, _ := newStore(t, nil)
	for i := 0; i < 5; i++ {
		p := owner.Append("a", opts10, []byte{byte(i)}, nil)
		if !standby.Put("a", opts10, p.Epoch, Pub{Offset: p.Offset, Data: []byte{byte(i)}}, nil) {
			t.Fatalf("put %d refused", i)
		}
	}
	op, _ := owner.Position("a")
	if sp, _ := standby.Position("a"); sp != op {
		t.Fatalf("standby %+v, owner %+v", sp, op)
	}
	if standby.Put("a", opts10, op.Epoch, Pub{Offset: 5, Data: []byte{9}}, nil) {
		t.Fatal("duplicate accepted")
	}
	// A gap drops what came before it.
	standby.Put("a", opts10, op.Epoch, Pub{Offset: 8, Data: []byte{7}}, nil)
	if r := standby.Since("a", opts10, Position{5, op.Epoch}, 10, nil); r.Recovered {
		t.Fatalf("recovered across a gap: %+v", r)
	}
	if r := standby.Since("a", opts10, Position{7, op.Epoch}, 10, nil); !r.Recovered || len(r.Pubs) != 1 {
		t.Fatalf("after the gap: %+v", r)
	}
	// Another epoch replaces the stream.
	standby.Put("a", opts10, "newepoch", Pub{Offset: 1, Data: []byte{1}}, nil)
	if sp, _ := standby.Position("a"); sp != (Position{1, "newepoch"}) {
		t.Fatalf("after new epoch: %+v", sp)
	}
}

func TestSnapshotRestore(t *testing.T) {
	a, _ := newStore(t, nil)
	b, _ := newStore(t, nil)
	for i := 0; i < 13; i++ {
		a.Append("ch", opts10, []byte{byte(i)}, nil)
	}
	snap, ok := a.Snapshot("ch")
	if !ok || len(snap.Pubs) != 10 || snap.Position.Offset != 13 {
		t.Fatalf("snapshot %+v", snap)
	}
	if !b.Restore("ch", opts10, snap) {
		t.Fatal("restore refused")
	}
	if b.Restore("ch", opts10, snap) {
		t.Fatal("restoring the same copy again changed the stream")
	}
	r := b.Since("ch", opts10, Position{8, snap.Position.Epoch}, 10, nil)
	if !r.Recovered || fmt.Sprint(offsets(r.Pubs)) != "[9 10 11 12 13]" {
		t.Fatalf("after restore: %+v", r)
	}
	if p := b.Append("ch", opts10, nil, nil); p.Offset != 14 || p.Epoch != snap.Position.Epoch {
		t.Fatalf("append after restore: %+v", p)
	}
	b.Remove("ch")
	if _, ok := b.Position("ch"); ok || b.Stats().Bytes != 0 || b.Stats().Publications != 0 {
		t.Fatalf("after remove: %+v", b.Stats())
	}
}

func TestLatest(t *testing.T) {
	s, _ := newStore(t, nil)
	for i := 0; i < 4; i++ {
		s.Append("a", opts10, []byte{byte(i)}, nil)
	}
	pubs, pos, ok := s.Latest("a", 2)
	if !ok || pos.Offset != 4 || fmt.Sprint(offsets(pubs)) != "[3 4]" {
		t.Fatalf("latest: %v %+v %v", offsets(pubs), pos, ok)
	}
	if _, _, ok := s.Latest("none", 2); ok {
		t.Fatal("latest created a stream")
	}
}

// TestCallbacksOrderAppendAndSince checks the promise recovery relies on:
// a subscriber attached from Since's callback gets every publication
// exactly once, from the Result or from Append's callback, in offset order.
func TestCallbacksOrderAppendAndSince(t *testing.T) {
	s, _ := newStore(t, nil)
	opts := Options{Size: 100000, TTL: time.Minute}
	type sub struct {
		got []uint64
	}
	var mu sync.Mutex // the subscribers' table, taken only inside callbacks
	var subs []*sub
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Go(func() {
			for i := 0; i < 500; i++ {
				s.Append("a", opts, nil, func(p Position) {
					mu.Lock()
					for _, x := range subs {
						x.got = append(x.got, p.Offset)
					}
					mu.Unlock()
				})
			}
		})
	}
	var from Position
	for i := 0; i < 50; i++ {
		x := &sub{}
		s.Since("a", opts, Position{Offset: 0, Epoch: from.Epoch}, 1<<30, func(r Result) {
			from = r.Position
			for _, p := range r.Pubs {
				x.got = append(x.got, p.Offset)
			}
			mu.Lock()
			subs = append(subs, x)
			mu.Unlock()
		})
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	for i, x := range subs[1:] { // the first asked for no recovery (no epoch yet)
		if len(x.got) != 2000 {
			t.Fatalf("subscriber %d got %d publications", i+1, len(x.got))
		}
		for j, o := range x.got {
			if o != uint64(j+1) {
				t.Fatalf("subscriber %d: position %d holds offset %d", i+1, j, o)
			}
		}
	}
}

func TestValidate(t *testing.T) {
	for _, mod := range []func(*Config){
		func(c *Config) { c.MaxBytes = 0 },
		func(c *Config) { c.Shards = 0 },
		func(c *Config) { c.MetaTTL = 0 },
		func(c *Config) { c.SweepInterval = 0 },
	} {
		c := DefaultConfig()
		mod(&c)
		if _, err := New(c); err == nil {
			t.Fatalf("accepted %+v", c)
		}
	}
}

func TestRunStops(t *testing.T) {
	s, _ := newStore(t, func(c *Config) { c.SweepInterval = time.Millisecond })
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { s.Run(stop); close(done) }()
	close(stop)
	<-done
}

// BenchmarkAppend is the cost of one publication on a channel with history.
func BenchmarkAppend(b *testing.B) {
	s, _ := newStore(b, func(c *Config) { c.Now = nil })
	data := make([]byte, 100)
	opts := Options{Size: 100, TTL: time.Minute}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			s.Append(channels[i%len(channels)], opts, data, nil)
			i++
		}
	})
}

var channels = func() []string {
	c := make([]string, 1000)
	for i := range c {
		c[i] = fmt.Sprint("room:", i)
	}
	return c
}()

// BenchmarkMemory reports the heap cost of a stream with no publications
// (bytes/channel) and of a retained 100-byte publication (bytes/pub).
func BenchmarkMemory(b *testing.B) {
	const n = 20000
	data := make([]byte, 100)
	opts := Options{Size: 10, TTL: time.Minute}
	for b.Loop() {
		s, _ := newStore(b, func(c *Config) { c.Now = nil; c.MaxBytes = 1 << 40 })
		names := make([]string, n)
		for i := range names {
			names[i] = fmt.Sprint("room:", i)
		}
		before := heap()
		for _, ch := range names {
			s.Since(ch, opts, Position{}, 0, nil)
		}
		mid := heap()
		for _, ch := range names {
			for j := 0; j < 10; j++ {
				s.Append(ch, opts, data, nil)
			}
		}
		after := heap()
		b.ReportMetric(float64(mid-before)/n, "bytes/channel")
		b.ReportMetric(float64(after-mid)/(10*n), "bytes/pub")
		runtime.KeepAlive(s)
	}
}

func heap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
