package frontend

import (
	"net/netip"
	"testing"
	"time"
)

func TestSourceTableLimitCloses(t *testing.T) {
	cfg := DefaultConfig()
	cfg.LimitClosesPerIP, cfg.LimitCloseBurstPerIP = 1, 3
	var now int64
	tab := newSourceTable(&cfg, func() int64 { return now })
	bad, good := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	for i := range 3 {
		if r := tab.admit(bad); r != "" {
			t.Fatalf("refused (%s) after %d limit closes of a burst of 3", r, i)
		}
		tab.limitClosed(bad)
	}
	if r := tab.admit(bad); r != rejectLimitClosesPerIP {
		t.Fatalf("admit after 3 limit closes: %q", r)
	}
	if r := tab.admit(good); r != "" {
		t.Fatalf("another address refused: %q", r)
	}
	// Debt is bounded by the burst: a hundred more closes cost at most
	// 2 × burst / rate seconds.
	for range 100 {
		tab.limitClosed(bad)
	}
	now += 6e9
	if r := tab.admit(bad); r != "" {
		t.Fatalf("still refused 6s after stopping: %q", r)
	}
	if tab.len() != 1 {
		t.Fatalf("tracked %d addresses; admitted addresses without a record need none", tab.len())
	}
}

func TestSourceTableShortConnections(t *testing.T) {
	cfg := DefaultConfig()
	cfg.LimitClosesPerIP = 0
	cfg.ShortConnectionsPerIP, cfg.ShortConnectionBurstPerIP = 2, 20
	var now int64
	tab := newSourceTable(&cfg, func() int64 { return now })
	churn, other := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	const maxWait = 5 * time.Second
	unpaced := func(what string, ip netip.Addr) {
		t.Helper()
		for i := range 100 {
			if r := tab.admit(ip); r != "" {
				t.Fatalf("%s: connection %d refused: %q", what, i, r)
			}
			if w, ok := tab.shortPaceWait(ip, maxWait); w != 0 || !ok {
				t.Fatalf("%s: connection %d paced: %v %v", what, i, w, ok)
			}
		}
	}
	turns := func(what string, n int, step, limit time.Duration) {
		t.Helper()
		for i := range n {
			w, ok := tab.shortPaceWait(churn, maxWait)
			if want := min(time.Duration(i)*step, limit); w < want-time.Millisecond || w > want || !ok {
				t.Fatalf("%s: upgrade %d waits %v %v, want %v", what, i, w, ok, want)
			}
		}
	}
	// Nothing charged: a reconnect storm is neither refused nor paced.
	unpaced("a clean address", churn)
	// A client's quick reconnect or two make nobody wait.
	tab.shortConnection(churn)
	tab.shortConnection(churn)
	unpaced("two short connections", churn)
	// From the third, upgrades take turns at 2/s, but no later than the
	// pacing ends by itself (half a second: one token back).
	tab.shortConnection(churn)
	turns("three short connections", 5, 500*time.Millisecond, 500*time.Millisecond)
	unpaced("another address", other)
	now += 1e9
	unpaced("a second later", churn)
	// A churn: 15 more leave 4 tokens; pacing would end by
	// itself in (18-4)/2 = 7 s, so turns are handed out 0.5 s apart up
	// to maxWait ahead, and beyond it refused at accept and in the
	// upgrade, reserving nothing.
	for range 15 {
		tab.shortConnection(churn)
	}
	turns("a churn", 11, 500*time.Millisecond, maxWait)
	if w, ok := tab.shortPaceWait(churn, maxWait); ok {
		t.Fatalf("upgrade beyond maxWait: wait %v, want a refusal", w)
	}
	// A client that left while it waited gives its turn back: the next
	// upgrade takes the last one handed out (5 s ahead), not a refusal.
	// The address is charged for it like a short connection.
	shortTokens := func() (v float64) {
		tab.with(churn, false, func(now int64, e *source) {
			v = e.short.peek(now, cfg.ShortConnectionsPerIP, float64(cfg.ShortConnectionBurstPerIP))
		})
		return v
	}
	before := shortTokens()
	tab.shortPaceAbandon(churn)
	if after := shortTokens(); after != before-1 {
		t.Fatalf("an abandoned wait left %v short-connection tokens, want %v", after, before-1)
	}
	if w, ok := tab.shortPaceWait(churn, maxWait); !ok || w < maxWait-time.Millisecond || w > maxWait {
		t.Fatalf("upgrade after a returned turn: wait %v %v, want %v", w, ok, maxWait)
	}
	if r := tab.admit(churn); r != rejectShortConnsPerIP {
		t.Fatalf("admit with every turn for %v handed out: %q", maxWait, r)
	}
	now += 5e8 + 1
	if r := tab.admit(churn); r != "" {
		t.Fatalf("refused at accept with credit and a turn left: %q", r)
	}
	// In debt the address is refused at accept; the debt is bounded by
	// the burst: (20 + 1) / 2 s later it has a token again, however
	// many more it was charged.
	for range 100 {
		tab.shortConnection(churn)
	}
	if r := tab.admit(churn); r != rejectShortConnsPerIP {
		t.Fatalf("admit in debt: %q", r)
	}
	now += 10e9
	if r := tab.admit(churn); r != rejectShortConnsPerIP {
		t.Fatalf("admitted still in debt: %q", r)
	}
	now += 5e8 + 1
	if r := tab.admit(churn); r != "" {
		t.Fatalf("refused with a token again: %q", r)
	}
	// Paid back to within two of the burst: no pacing.
	now += 10e9
	unpaced("paid back", churn)
}

func TestSourceTableHandshakeRate(t *testing.T) {
	cfg := DefaultConfig()
	cfg.LimitClosesPerIP = 0
	cfg.MaxHandshakesPerIP, cfg.HandshakeBurstPerIP = 10, 5
	var now int64
	tab := newSourceTable(&cfg, func() int64 { return now })
	ip := netip.MustParseAddr("2001:db8::1")
	n := 0
	for range 100 {
		if tab.admit(ip) == "" {
			n++
		}
	}
	if n != 5 {
		t.Fatalf("admitted %d at once with a burst of 5", n)
	}
	now += 1e9
	n = 0
	for range 100 {
		if tab.admit(ip) == "" {
			n++
		}
	}
	if n != 5 { // refilled to the burst, not beyond; refusals took nothing
		t.Fatalf("admitted %d a second later at 10/s burst 5", n)
	}
}

func TestSourceTableIsBounded(t *testing.T) {
	cfg := DefaultConfig()
	cfg.LimitClosesPerIP, cfg.LimitCloseBurstPerIP = 1, 10
	cfg.SourceTableSize = 256
	var now int64
	tab := newSourceTable(&cfg, func() int64 { return now })
	bad := netip.MustParseAddr("198.51.100.1")
	for range 20 {
		tab.limitClosed(bad)
	}
	// Addresses spraying limit closes, one each, fill the table.
	for i := range 20000 {
		tab.limitClosed(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}))
	}
	if n := tab.len(); n > 256 {
		t.Fatalf("tracked %d addresses, bound 256", n)
	}
	// The indebted address is the last to be forgotten.
	if r := tab.admit(bad); r != rejectLimitClosesPerIP {
		t.Fatalf("the offending address was forgotten (admit: %q)", r)
	}
}

func TestValidateRates(t *testing.T) {
	for _, mutate := range []func(*Config){
		func(c *Config) { c.SubscribeRate = -1 },
		func(c *Config) { c.SubscribeBurst = 0 },
		func(c *Config) { c.SubscribeRatePerIP, c.SubscribeBurstPerIP = 10, 0 },
		func(c *Config) { c.LimitClosesPerIP = -1 },
		func(c *Config) { c.LimitCloseBurstPerIP = 0 },
		func(c *Config) { c.ShortConnectionsPerIP = -1 },
		func(c *Config) { c.ShortConnectionsPerIP, c.ShortConnectionBurstPerIP = 2, 0 },
		func(c *Config) { c.ShortConnectionsPerIP, c.ShortConnectionTime = 2, 0 },
		func(c *Config) { c.MaxHandshakesPerIP, c.HandshakeBurstPerIP = 10, 0 },
		func(c *Config) { c.SourceTableSize = 0 },
		func(c *Config) { c.ChannelDeliveryRate = -1 },
		func(c *Config) { c.ChannelDeliveryBurst = 0 },
		func(c *Config) { c.AcceptRunnableMax = -1 },
		func(c *Config) { c.AcceptRunnableMax, c.AcceptHoldMax = 1, 0 },
	} {
		c := DefaultConfig()
		mutate(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("accepted %+v", c)
		}
	}
}
