package frontend

import (
	"net/netip"
	"testing"
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
		func(c *Config) { c.MaxHandshakesPerIP, c.HandshakeBurstPerIP = 10, 0 },
		func(c *Config) { c.SourceTableSize = 0 },
		func(c *Config) { c.ChannelDeliveryRate = -1 },
		func(c *Config) { c.ChannelDeliveryBurst = 0 },
	} {
		c := DefaultConfig()
		mutate(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("accepted %+v", c)
		}
	}
}
