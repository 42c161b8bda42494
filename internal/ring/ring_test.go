package ring

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"testing/quick"

	"github.com/sccgo/sccgo/protocol"
)

func brokers(n int) []protocol.BrokerInfo {
	bs := make([]protocol.BrokerInfo, n)
	for i := range bs {
		bs[i] = protocol.BrokerInfo{ID: fmt.Sprintf("10.0.0.%d:8888", i+1), Addr: fmt.Sprintf("10.0.0.%d:8888", i+1)}
	}
	return bs
}

func channels(n int) []string {
	cs := make([]string, n)
	for i := range cs {
		cs[i] = fmt.Sprintf("room-%d", i)
	}
	return cs
}

func TestEmpty(t *testing.T) {
	for _, r := range []*Ring{nil, New(3, nil)} {
		if i := r.OwnerIndex("x"); i != -1 {
			t.Fatalf("OwnerIndex on empty ring = %d", i)
		}
		if _, ok := r.Owner("x"); ok {
			t.Fatal("Owner on empty ring ok")
		}
		if r.OwnerID("x") != "" || r.Len() != 0 || r.Contains("a") {
			t.Fatal("empty ring not empty")
		}
	}
}

func TestNewSortsAndDedups(t *testing.T) {
	r := New(7, []protocol.BrokerInfo{{ID: "c", Addr: "c1"}, {ID: "a", Addr: "a1"}, {ID: "c", Addr: "c2"}, {ID: "b"}})
	got := r.Brokers()
	want := []protocol.BrokerInfo{{ID: "a", Addr: "a1"}, {ID: "b"}, {ID: "c", Addr: "c1"}}
	if !New(0, want).SameBrokers(r) || len(got) != 3 {
		t.Fatalf("brokers = %v, want %v", got, want)
	}
	if r.Version() != 7 || r.String() != "v7[a,b,c]" {
		t.Fatalf("ring = %v", r)
	}
	if r.Index("b") != 1 || r.Index("zz") != -1 || !r.Contains("c") {
		t.Fatal("Index/Contains wrong")
	}
}

func TestSingleBroker(t *testing.T) {
	r := New(1, brokers(1))
	for _, ch := range channels(100) {
		if r.OwnerIndex(ch) != 0 {
			t.Fatal("single broker does not own everything")
		}
	}
}

func TestBalance(t *testing.T) {
	for _, n := range []int{2, 3, 5, 10, 20} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			r := New(1, brokers(n))
			counts := make([]int, n)
			const chans = 100_000
			for _, ch := range channels(chans) {
				counts[r.OwnerIndex(ch)]++
			}
			mean := float64(chans) / float64(n)
			if mx := slices.Max(counts); float64(mx) > 1.10*mean {
				t.Fatalf("max share %d > 1.10 × mean %.0f: %v", mx, mean, counts)
			}
		})
	}
}

func TestBalanceRandomIDs(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := 0; trial < 5; trial++ {
		bs := make([]protocol.BrokerInfo, 10)
		for i := range bs {
			bs[i].ID = fmt.Sprintf("broker-%x", rng.Uint64())
		}
		r := New(1, bs)
		counts := make([]int, 10)
		for i := 0; i < 100_000; i++ {
			counts[r.OwnerIndex(fmt.Sprintf("%x", rng.Uint64()))]++
		}
		if mx := slices.Max(counts); mx > 11_000 {
			t.Fatalf("trial %d: max share %d > 11000: %v", trial, mx, counts)
		}
	}
}

func TestAddMovesOnlyToNewBroker(t *testing.T) {
	bs := brokers(11)
	before, after := New(1, bs[:10]), New(2, bs)
	moved := 0
	const chans = 100_000
	for _, ch := range channels(chans) {
		a, b := before.OwnerID(ch), after.OwnerID(ch)
		if a != b {
			moved++
			if b != bs[10].ID {
				t.Fatalf("%s moved from %s to %s, not to the new broker", ch, a, b)
			}
		}
	}
	if limit := 1.1 / 11 * chans; float64(moved) > limit {
		t.Fatalf("moved %d > %.0f", moved, limit)
	}
	if moved == 0 {
		t.Fatal("new broker owns nothing")
	}
}

func TestRemoveMovesOnlyItsChannels(t *testing.T) {
	bs := brokers(10)
	before := New(1, bs)
	gone := bs[4].ID
	after := before.Without(gone)
	if after.Version() != 1 || after.Len() != 9 || after.Contains(gone) {
		t.Fatalf("Without = %v", after)
	}
	if !after.Equal(New(1, slices.Delete(slices.Clone(bs), 4, 5))) {
		t.Fatal("Without differs from New without the broker")
	}
	for _, ch := range channels(100_000) {
		a, b := before.OwnerID(ch), after.OwnerID(ch)
		if a != gone && a != b {
			t.Fatalf("%s moved from %s to %s though %s was removed", ch, a, b, gone)
		}
	}
	if before.Without("nope") != before {
		t.Fatal("Without of an absent id should return the ring itself")
	}
}

func TestOrderIndependence(t *testing.T) {
	f := func(seed uint64, n uint8) bool {
		rng := rand.New(rand.NewPCG(seed, 0))
		bs := brokers(int(n%16) + 1)
		shuffled := slices.Clone(bs)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		// Duplicates do not change the set either.
		shuffled = append(shuffled, bs[rng.IntN(len(bs))])
		a, b := New(5, bs), New(5, shuffled)
		if !a.Equal(b) {
			return false
		}
		for i := 0; i < 200; i++ {
			ch := fmt.Sprintf("c%x", rng.Uint64())
			if a.OwnerID(ch) != b.OwnerID(ch) {
				return false
			}
		}
		return true
	}
	if err := quick.Check(f, nil); err != nil {
		t.Fatal(err)
	}
}

// The same set removed in any order, from any superset, gives the same owners.
func TestWithoutCommutes(t *testing.T) {
	f := func(seed uint64) bool {
		rng := rand.New(rand.NewPCG(seed, 1))
		bs := brokers(8)
		r := New(3, bs)
		x, y := bs[rng.IntN(8)].ID, bs[rng.IntN(8)].ID
		a, b := r.Without(x).Without(y), r.Without(y, x)
		return a.Equal(b)
	}
	if err := quick.Check(f, nil); err != nil {
		t.Fatal(err)
	}
}

func TestEqual(t *testing.T) {
	bs := brokers(3)
	cases := []struct {
		a, b *Ring
		eq   bool
	}{
		{New(1, bs), New(1, bs), true},
		{New(1, bs), New(2, bs), false},
		{New(1, bs), New(1, bs[:2]), false},
		{New(1, bs), New(1, []protocol.BrokerInfo{bs[0], bs[1], {ID: bs[2].ID, Addr: "other"}}), false},
		{nil, New(0, nil), true},
	}
	for i, c := range cases {
		if c.a.Equal(c.b) != c.eq {
			t.Errorf("case %d: Equal = %v", i, !c.eq)
		}
	}
}

func TestProtocolRoundTrip(t *testing.T) {
	r := New(9, brokers(4))
	if !FromProtocol(r.Protocol()).Equal(r) {
		t.Fatal("round trip changed the ring")
	}
}

// Owners are pinned: a change to the hash would silently reshard every
// cluster during a rolling upgrade, so it must be a deliberate one.
func TestOwnersStable(t *testing.T) {
	r := New(1, []protocol.BrokerInfo{{ID: "a"}, {ID: "b"}, {ID: "c"}})
	got := ""
	for _, ch := range []string{"x", "y", "z", "news", "chat/1", ""} {
		got += r.OwnerID(ch)
	}
	if want := "aaabba"; got != want {
		t.Fatalf("owners = %q, want %q", got, want)
	}
}

func TestCache(t *testing.T) {
	c := NewCache(64)
	r1, r2 := New(1, brokers(5)), New(2, brokers(7))
	for round := 0; round < 3; round++ {
		for _, r := range []*Ring{r1, r2} {
			for _, ch := range channels(500) {
				if got, want := c.OwnerIndex(r, ch), r.OwnerIndex(ch); got != want {
					t.Fatalf("cache owner %d, want %d", got, want)
				}
			}
		}
	}
	if c.OwnerIndex(nil, "x") != -1 {
		t.Fatal("cache on nil ring")
	}
}

func BenchmarkOwner(b *testing.B) {
	r := New(1, brokers(10))
	chs := channels(1024)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		_ = r.OwnerIndex(chs[i&1023])
	}
}

func BenchmarkCacheOwner(b *testing.B) {
	r := New(1, brokers(10))
	c := NewCache(0)
	chs := channels(1024)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		_ = c.OwnerIndex(r, chs[i&1023])
	}
}

// The standby (the best broker after the owner) is the owner of the ring
// without the owner, for every channel: that is what lets a standby hold
// a channel's history before it owns it.
func TestStandbyIsOwnerWithoutOwner(t *testing.T) {
	var bs []protocol.BrokerInfo
	for i := 0; i < 7; i++ {
		bs = append(bs, protocol.BrokerInfo{ID: fmt.Sprintf("b%d", i), Addr: fmt.Sprintf("h:%d", i)})
	}
	r := New(1, bs)
	seen := map[int]bool{}
	for i := 0; i < 5000; i++ {
		ch := fmt.Sprintf("ch-%d", i)
		owner := r.OwnerID(ch)
		si := r.StandbyIndex(ch, owner)
		if si < 0 || r.Broker(si).ID == owner {
			t.Fatalf("%s: standby %d is the owner %s", ch, si, owner)
		}
		if want := r.Without(owner).OwnerID(ch); r.Broker(si).ID != want {
			t.Fatalf("%s: standby %s, owner without %s is %s", ch, r.Broker(si).ID, owner, want)
		}
		if r.StandbyIndex(ch, "not-a-broker") != r.OwnerIndex(ch) {
			t.Fatalf("%s: skipping no broker does not give the owner", ch)
		}
		seen[si] = true
	}
	if len(seen) != len(bs) {
		t.Fatalf("standbys spread over %d of %d brokers", len(seen), len(bs))
	}
	if New(1, bs[:1]).StandbyIndex("x", "b0") != -1 {
		t.Fatal("a one-broker ring has a standby")
	}
	var nilRing *Ring
	if nilRing.StandbyIndex("x", "") != -1 {
		t.Fatal("a nil ring has a standby")
	}
}
