package gossip

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/sccgo/sccgo/internal/ring"
	"github.com/sccgo/sccgo/protocol"
)

// Reasons gossip refuses a stream or a ring (bounded metric labels of
// scc_<role>_gossip_rejects_total).
const (
	ReasonStreamTotal    = "stream_total"     // MaxStreams inbound streams already open
	ReasonStreamSource   = "stream_source"    // MaxStreamsPerSource open from that IP
	ReasonStreamTooLarge = "stream_too_large" // a stream sent more than MaxStreamBytes
	ReasonRingMAC        = "ring_mac"         // a ring without a valid cluster-key MAC
	ReasonRingJump       = ring.ReasonVersionJump
	ReasonRingCeiling    = ring.ReasonVersionCeiling
)

func newRejects(reg prometheus.Registerer, role string) *prometheus.CounterVec {
	if role == "" {
		role = "node"
	}
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "scc_" + role + "_gossip_rejects_total",
		Help: "Gossip streams closed and rings refused before they were trusted, by reason.",
	}, []string{"reason"})
	for _, r := range []string{ReasonStreamTotal, ReasonStreamSource, ReasonStreamTooLarge, ReasonRingMAC, ReasonRingJump, ReasonRingCeiling} {
		c.WithLabelValues(r)
	}
	if r, ok := reg.(*prometheus.Registry); ok && r == nil {
		reg = nil
	}
	if reg == nil {
		return c
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
				return existing
			}
		}
	}
	return c
}

// deriveKey derives a purpose-specific key from SCC_AUTH_KEY; the label
// keeps the keys of gossip encryption, ring MACs and link MACs apart.
func deriveKey(label string, key []byte) []byte {
	k := sha256.Sum256(append([]byte(label), key...))
	return k[:]
}

// A ring travels in gossip as its msgpack encoding (protocol.Ring)
// followed by an HMAC-SHA256 of that encoding under a key derived from
// SCC_AUTH_KEY. A node that only knows the plain encoding decodes the ring
// and ignores the trailing MAC, so rolling upgrades keep learning rings.
const ringMACLen = sha256.Size

// encodeRing encodes r with its MAC for gossip.
func (g *Gossip) encodeRing(r protocol.Ring) ([]byte, error) {
	b, err := msgpack.Marshal(&protocol.Ring{Version: r.Version, Brokers: r.Brokers})
	if err != nil {
		return nil, err
	}
	m := hmac.New(sha256.New, g.ringKey)
	m.Write(b)
	return m.Sum(b), nil
}

// decodeRing verifies a gossiped ring's MAC and decodes it.
func (g *Gossip) decodeRing(b []byte) (protocol.Ring, error) {
	if len(b) <= ringMACLen {
		return protocol.Ring{}, errors.New("ring without a MAC")
	}
	body, mac := b[:len(b)-ringMACLen], b[len(b)-ringMACLen:]
	m := hmac.New(sha256.New, g.ringKey)
	m.Write(body)
	if !hmac.Equal(mac, m.Sum(nil)) {
		return protocol.Ring{}, errors.New("ring MAC does not verify (unsigned, or another key)")
	}
	var r protocol.Ring
	if err := msgpack.Unmarshal(body, &r); err != nil {
		return protocol.Ring{}, fmt.Errorf("decoding ring: %w", err)
	}
	return r, nil
}

// newNetTransport creates memberlist's own transport for mc, retrying a
// few times for a free port as memberlist.Create does.
func newNetTransport(mc *memberlist.Config) (*memberlist.NetTransport, error) {
	nc := &memberlist.NetTransportConfig{BindAddrs: []string{mc.BindAddr}, BindPort: mc.BindPort, Logger: mc.Logger}
	tries := 1
	if mc.BindPort == 0 {
		tries = 10
	}
	var err error
	for range tries {
		var nt *memberlist.NetTransport
		if nt, err = memberlist.NewNetTransport(nc); err == nil {
			if mc.BindPort == 0 {
				mc.BindPort = nt.GetAutoBindPort()
				mc.AdvertisePort = mc.BindPort
			}
			return nt, nil
		}
		if !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	return nil, fmt.Errorf("binding gossip: %w", err)
}

// LimitsReader is the part of config.Reader that ReadLimits uses.
type LimitsReader interface {
	Int(name string, def int, help string) int
	Int64(name string, def int64, help string) int64
	Fail(err error)
}

// ReadLimits reads the pre-authentication bounds from the environment
// through r: SCC_GOSSIP_MAX_STREAM_BYTES, SCC_GOSSIP_MAX_STREAMS,
// SCC_GOSSIP_MAX_STREAMS_PER_SOURCE and SCC_RING_MAX_VERSION_STEP. A value
// out of range is reported through r.Err.
func (c *Config) ReadLimits(r LimitsReader) {
	d := DefaultConfig()
	c.MaxStreamBytes = r.Int64("SCC_GOSSIP_MAX_STREAM_BYTES", d.MaxStreamBytes, "bytes one inbound gossip TCP stream may send (memberlist buffers it whole before decrypting)")
	c.MaxStreams = r.Int("SCC_GOSSIP_MAX_STREAMS", d.MaxStreams, "inbound gossip TCP streams open at once; more are closed")
	c.MaxStreamsPerSource = r.Int("SCC_GOSSIP_MAX_STREAMS_PER_SOURCE", d.MaxStreamsPerSource, "inbound gossip TCP streams open at once from one IP")
	step := r.Int64("SCC_RING_MAX_VERSION_STEP", int64(d.MaxRingVersionStep), "how far a ring version from a peer may jump above the one held")
	var errs []error
	if c.MaxStreamBytes < 1024 {
		errs = append(errs, errors.New("SCC_GOSSIP_MAX_STREAM_BYTES must be at least 1024"))
	}
	if c.MaxStreams < 1 || c.MaxStreamsPerSource < 1 {
		errs = append(errs, errors.New("SCC_GOSSIP_MAX_STREAMS and SCC_GOSSIP_MAX_STREAMS_PER_SOURCE must be at least 1"))
	}
	if step < 1 {
		errs = append(errs, errors.New("SCC_RING_MAX_VERSION_STEP must be at least 1"))
	} else {
		c.MaxRingVersionStep = uint64(step)
	}
	r.Fail(errors.Join(errs...))
}
