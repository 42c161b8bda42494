package gossip

import (
	"encoding/binary"
	"math"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/sccgo/sccgo/internal/ring"
	"github.com/sccgo/sccgo/protocol"
)

const guardKey = "gossip-guard-test-key-0123456789abcdef"

func keyed(id, role string, reg *prometheus.Registry) Config {
	c := testConfig(id, role)
	c.AuthKey = []byte(guardKey)
	c.Registry = reg
	return c
}

func rejects(g *Gossip, reason string) float64 {
	var m dto.Metric
	if err := g.rejects.WithLabelValues(reason).Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

// A member that gossips a ring at version 2^64-1 (or any jump past
// MaxRingVersionStep) does not wedge the others: they refuse it, count it,
// and go on adopting the next legitimate ring. A ring without the cluster
// key's MAC is refused too.
func TestRingVersionBoundedAndSigned(t *testing.T) {
	reg := prometheus.NewRegistry()
	a := start(t, keyed("a", protocol.RoleState, nil))
	cb := keyed("b", protocol.RoleFrontend, reg)
	cb.Seeds = []string{a.Addr()}
	b := start(t, cb)
	ce := keyed("evil", protocol.RoleBroker, nil)
	ce.Seeds = []string{a.Addr()}
	evil := start(t, ce)
	for _, g := range []*Gossip{a, b, evil} {
		waitFor(t, 5*time.Second, "3 alive members", func() bool { return g.NumAlive() == 3 })
	}
	a.SetRing(protocol.Ring{Version: 5, Brokers: []protocol.BrokerInfo{{ID: "b1", Addr: "b1:1"}}})
	waitFor(t, 5*time.Second, "ring 5 at b", func() bool { r, _ := b.Ring(); return r.Version == 5 })

	evil.SetRing(protocol.Ring{Version: math.MaxUint64, Brokers: []protocol.BrokerInfo{{ID: "evil", Addr: "evil:1"}}})
	waitFor(t, 5*time.Second, "the 2^64-1 ring refused", func() bool { return rejects(b, ReasonRingCeiling) >= 1 })
	evil.SetRing(protocol.Ring{Version: math.MaxUint64 - 1}) // not newer at evil: nothing sent
	waitFor(t, 5*time.Second, "the 2^64-1 ring refused at a", func() bool { return rejects(a, ReasonRingCeiling) >= 1 })

	// A jump past the step from the ring held.
	(*delegate)(b).NotifyMsg(mustEncode(t, b, protocol.Ring{Version: 5 + ring.DefaultMaxVersionStep + 1}))
	if got := rejects(b, ReasonRingJump); got != 1 {
		t.Fatalf("rejects{%s} = %v, want 1", ReasonRingJump, got)
	}
	// An unsigned ring, as a peer without the MAC would send it.
	plain, err := msgpack.Marshal(&protocol.Ring{Version: 6})
	if err != nil {
		t.Fatal(err)
	}
	(*delegate)(b).MergeRemoteState(plain, false)
	if got := rejects(b, ReasonRingMAC); got != 1 {
		t.Fatalf("rejects{%s} = %v, want 1", ReasonRingMAC, got)
	}
	if r, _ := b.Ring(); r.Version != 5 {
		t.Fatalf("b holds version %d after the refused rings, want 5", r.Version)
	}

	// The cluster is not wedged: the next legitimate ring is adopted.
	a.SetRing(protocol.Ring{Version: 6, Brokers: []protocol.BrokerInfo{{ID: "b2", Addr: "b2:1"}}})
	waitFor(t, 5*time.Second, "ring 6 at b", func() bool { r, _ := b.Ring(); return r.Version == 6 })
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, mf := range mfs {
		found = found || mf.GetName() == "scc_frontend_gossip_rejects_total"
	}
	if !found {
		t.Fatal("scc_frontend_gossip_rejects_total not registered")
	}
}

func mustEncode(t *testing.T, g *Gossip, r protocol.Ring) []byte {
	t.Helper()
	b, err := g.encodeRing(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Inbound gossip streams are capped per source and each may send at most
// MaxStreamBytes, whatever length it declares: a stream declaring an
// encrypted 16 MiB payload is cut off, counted, and the cluster still
// gossips.
func TestStreamBounds(t *testing.T) {
	ca := keyed("a", protocol.RoleBroker, nil)
	ca.MaxStreamBytes = 64 << 10
	ca.MaxStreamsPerSource = 2
	ca.TCPTimeout = 5 * time.Second
	a := start(t, ca)

	// Three connections from one source: the third is closed at once.
	var conns []net.Conn
	for range 3 {
		c, err := net.Dial("tcp", a.Addr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		conns = append(conns, c)
	}
	waitFor(t, 5*time.Second, "the third stream refused", func() bool { return rejects(a, ReasonStreamSource) == 1 })

	// An encrypted message (memberlist type 10) declaring 16 MiB, then more than
	// MaxStreamBytes of it.
	hdr := []byte{10, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(hdr[1:], 16<<20)
	chunk := make([]byte, 32<<10)
	_, _ = conns[0].Write(hdr)
	for range 4 {
		if _, err := conns[0].Write(chunk); err != nil {
			break // closed by a: expected
		}
	}
	waitFor(t, 5*time.Second, "the oversized stream cut off", func() bool { return rejects(a, ReasonStreamTooLarge) == 1 })

	for _, c := range conns {
		c.Close()
	}
	// Slots are free again: a keyed node joins through streams.
	cb := keyed("b", protocol.RoleFrontend, nil)
	cb.Seeds = []string{a.Addr()}
	b := start(t, cb)
	waitFor(t, 5*time.Second, "b joined", func() bool { return b.NumAlive() == 2 && a.NumAlive() == 2 })
}

// A node that decodes gossiped rings as plain protocol.Ring (no MAC check)
// still reads a signed one: the MAC trails the encoding.
func TestSignedRingReadableWithoutMAC(t *testing.T) {
	g := &Gossip{ringKey: deriveKey("sccgo-gossip-ring\x00", []byte(guardKey))}
	want := protocol.Ring{Version: 9, Brokers: []protocol.BrokerInfo{{ID: "b1", Addr: "b1:1"}}}
	b := mustEncode(t, g, want)
	var r protocol.Ring
	if err := msgpack.Unmarshal(b, &r); err != nil || r.Version != 9 || len(r.Brokers) != 1 || r.Brokers[0].ID != "b1" {
		t.Fatalf("plain decode: %+v, %v", r, err)
	}
	if r, err := g.decodeRing(b); err != nil || r.Version != 9 {
		t.Fatalf("decodeRing: %+v, %v", r, err)
	}
	b[len(b)-1] ^= 1
	if _, err := g.decodeRing(b); err == nil {
		t.Fatal("a ring with a broken MAC decoded")
	}
	other := &Gossip{ringKey: deriveKey("sccgo-gossip-ring\x00", []byte("another-key"))}
	if _, err := other.decodeRing(mustEncode(t, g, want)); err == nil {
		t.Fatal("a ring signed under another key decoded")
	}
}
