package nodelink

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/coder/websocket"

	"github.com/sccgo/sccgo/protocol"
)

// nonceLen is the length of handshake nonces.
const nonceLen = 16

// RejectError is a refused handshake. An allow function returns one to
// refuse a peer with a specific reason (any other error refuses with
// protocol.RejectRole); Dial returns one when the acceptor sent Reject or
// its Welcome did not verify; a link closed by a Reject after the handshake
// carries one as its CloseError's cause.
type RejectError struct {
	Reason  string // a protocol.Reject* or Reason* constant
	Message string
}

func (e *RejectError) Error() string {
	if e.Message == "" {
		return "nodelink: rejected: " + e.Reason
	}
	return "nodelink: rejected: " + e.Reason + ": " + e.Message
}

// dialClient dials links directly: inter-node traffic never goes through
// an HTTP proxy.
var dialClient = &http.Client{Transport: &http.Transport{
	Proxy:       nil,
	DialContext: (&net.Dialer{KeepAlive: 15 * time.Second}).DialContext,
}}

func newNonce() []byte {
	b := make([]byte, nonceLen)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return b
}

// writeMsg writes one message as its own frame.
func writeMsg(ctx context.Context, conn *websocket.Conn, t protocol.MsgType, body any) error {
	b, err := protocol.AppendMessage(nil, t, body)
	if err != nil {
		return err
	}
	return conn.Write(ctx, websocket.MessageBinary, b)
}

// errHandshakeRead classifies a failed handshake read.
type errHandshakeRead struct {
	reason string
	err    error
}

func (e *errHandshakeRead) Error() string { return e.reason + ": " + e.err.Error() }
func (e *errHandshakeRead) Unwrap() error { return e.err }

// readFrame reads one binary handshake frame.
func readFrame(ctx context.Context, conn *websocket.Conn) ([]byte, error) {
	typ, b, err := conn.Read(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil, &errHandshakeRead{ReasonTimeout, err}
		}
		if errors.Is(err, websocket.ErrMessageTooBig) {
			// The peer's fault, not a hang-up: the WebSocket layer has
			// already closed with 1009.
			return nil, &errHandshakeRead{protocol.RejectMalformed, err}
		}
		return nil, &errHandshakeRead{ReasonClosed, err}
	}
	if typ != websocket.MessageBinary {
		return nil, &errHandshakeRead{protocol.RejectMalformed, errors.New("text frame")}
	}
	return b, nil
}

// readOne reads a frame that must hold exactly one message.
func readOne(ctx context.Context, conn *websocket.Conn) (protocol.Message, error) {
	b, err := readFrame(ctx, conn)
	if err != nil {
		return protocol.Message{}, err
	}
	return oneMessage(b)
}

// oneMessage splits a handshake frame, which must hold exactly one message.
func oneMessage(b []byte) (protocol.Message, error) {
	msgs, err := protocol.SplitMessages(b)
	if err != nil || len(msgs) != 1 {
		if err == nil {
			err = fmt.Errorf("%d messages in a handshake frame", len(msgs))
		}
		return protocol.Message{}, &errHandshakeRead{protocol.RejectMalformed, err}
	}
	return msgs[0], nil
}

// verifyHello checks the dialer's first frame against the Challenge nonce
// sent: exactly one well-formed Hello whose MAC verifies under key, with a
// protocol version both sides speak. It returns the Hello and the version
// to use, or the reason to refuse. The key is checked before the version,
// so a peer without it learns nothing about this node.
func verifyHello(frame, key, challengeNonce []byte) (protocol.Hello, int, *RejectError) {
	var h protocol.Hello
	m, err := oneMessage(frame)
	if err != nil {
		return h, 0, &RejectError{Reason: protocol.RejectMalformed, Message: err.Error()}
	}
	if m.Type != protocol.MsgHello {
		return h, 0, &RejectError{Reason: protocol.RejectMalformed, Message: fmt.Sprintf("got %v before hello", m.Type)}
	}
	if err := m.Decode(&h); err != nil {
		return h, 0, &RejectError{Reason: protocol.RejectMalformed, Message: "malformed hello"}
	}
	if len(h.Nonce) != nonceLen {
		return h, 0, &RejectError{Reason: protocol.RejectMalformed, Message: fmt.Sprintf("hello nonce of %d bytes", len(h.Nonce))}
	}
	if !hmac.Equal(h.MAC, protocol.HelloMAC(key, challengeNonce, h.Role, h.NodeID, h.Nonce)) {
		return h, 0, &RejectError{Reason: protocol.RejectAuth, Message: "hello does not verify (wrong key?)"}
	}
	proto := min(h.MaxProto, protocol.NodeProtoMax)
	if proto < max(h.MinProto, protocol.NodeProtoMin) {
		return h, 0, &RejectError{Reason: protocol.RejectVersion,
			Message: fmt.Sprintf("peer speaks %d..%d, this node %d..%d", h.MinProto, h.MaxProto, protocol.NodeProtoMin, protocol.NodeProtoMax)}
	}
	return h, proto, nil
}

// Accept upgrades an HTTP request at Path to a link: it sends a Challenge,
// verifies the peer's Hello (key, protocol version, then allow, which may be
// nil) and answers Welcome with seeds, or Reject. Every refusal is counted
// in Metrics.Rejects and returned as an error; the connection is then
// closed. The caller runs the returned link (the handler may return first:
// the connection is hijacked).
//
// Until the Hello verifies, the connection may hold at most HelloMaxBytes
// unread, and it takes one of the MaxPendingHandshakes slots (and one of
// its source IP's MaxPendingHandshakesPerSource) in cfg.Pending; without a
// free slot the request is refused with HTTP 503. A request that came over TLS without a
// verified client certificate is refused with HTTP 403 before the upgrade
// (ErrNoCert, counted as ReasonNoCert).
func Accept(w http.ResponseWriter, r *http.Request, cfg Config, allow func(Peer) error, seeds []string) (*Link, error) {
	cfg = cfg.withDefaults()
	if err := checkPeerCert(w, r, cfg); err != nil {
		return nil, err
	}
	if cfg.Pending != nil {
		release, reason := cfg.Pending.acquire(sourceOf(r.RemoteAddr), cfg.MaxPendingHandshakes, cfg.MaxPendingHandshakesPerSource)
		if release == nil {
			cfg.Metrics.Rejects.WithLabelValues(reason).Inc()
			w.Header().Set("Connection", "close")
			http.Error(w, "too many pending link handshakes", http.StatusServiceUnavailable)
			return nil, &RejectError{Reason: reason, Message: "too many pending link handshakes"}
		}
		cfg.Metrics.PendingHandshakes.Inc()
		defer func() {
			release()
			cfg.Metrics.PendingHandshakes.Dec()
		}()
	}
	conn, err := websocket.Accept(w, r, &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		cfg.Metrics.Rejects.WithLabelValues(protocol.RejectMalformed).Inc()
		return nil, fmt.Errorf("accepting link: %w", err)
	}
	// Nothing is trusted before the Hello verifies: a tiny read budget.
	conn.SetReadLimit(cfg.HelloMaxBytes)
	ctx, cancel := context.WithTimeout(r.Context(), cfg.HandshakeTimeout)
	defer cancel()
	log := cfg.Logger.With("remote", r.RemoteAddr)

	refuse := func(reason, msg string, cause error) (*Link, error) {
		cfg.Metrics.Rejects.WithLabelValues(reason).Inc()
		log.Warn("link refused", "reason", reason, "err", cause)
		if reason != ReasonTimeout && reason != ReasonClosed {
			_ = writeMsg(ctx, conn, protocol.MsgReject, protocol.Reject{Reason: reason, Message: msg})
		}
		_ = conn.CloseNow()
		return nil, &RejectError{Reason: reason, Message: cause.Error()}
	}

	nonce := newNonce()
	if err := writeMsg(ctx, conn, protocol.MsgChallenge, protocol.Challenge{
		Nonce: nonce, MinProto: protocol.NodeProtoMin, MaxProto: protocol.NodeProtoMax,
		NodeID: cfg.NodeID, Role: cfg.Role,
	}); err != nil {
		return refuse(ReasonClosed, "", err)
	}
	b, err := readFrame(ctx, conn)
	if err != nil {
		var he *errHandshakeRead
		errors.As(err, &he)
		return refuse(he.reason, "malformed handshake", err)
	}
	h, proto, rerr := verifyHello(b, cfg.AuthKey, nonce)
	if rerr != nil {
		if h.NodeID != "" {
			log = log.With("peer", h.NodeID, "peer_role", h.Role)
		}
		return refuse(rerr.Reason, rerr.Message, rerr)
	}
	peer := Peer{
		NodeID: h.NodeID, Role: h.Role, Addr: h.Addr, GossipAddr: h.GossipAddr,
		RingVersion: h.RingVersion, Draining: h.Draining, Proto: proto,
		RulesDigest: h.RulesDigest,
	}
	if allow != nil {
		if err := allow(peer); err != nil {
			reason, msg := protocol.RejectRole, err.Error()
			var re *RejectError
			if errors.As(err, &re) {
				reason, msg = re.Reason, re.Message
			}
			return refuse(reason, msg, err)
		}
	}
	if err := writeMsg(ctx, conn, protocol.MsgWelcome, protocol.Welcome{
		Proto: proto, NodeID: cfg.NodeID, MAC: protocol.WelcomeMAC(cfg.AuthKey, h.Nonce, cfg.NodeID), Seeds: seeds,
	}); err != nil {
		return refuse(ReasonClosed, "", err)
	}
	conn.SetReadLimit(cfg.MaxFrameBytes)
	return newLink(conn, cfg, peer), nil
}

// Dial connects to the node at hostport (host:port) and performs the
// dialer's side of the handshake, bounded by ctx and HandshakeTimeout. A
// refusal by either side is a *RejectError.
func Dial(ctx context.Context, hostport string, cfg Config) (*Link, error) {
	cfg = cfg.withDefaults()
	ctx, cancel := context.WithTimeout(ctx, cfg.HandshakeTimeout)
	defer cancel()
	url, client, done := dialTarget(hostport, cfg)
	conn, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{
		HTTPClient: client, CompressionMode: websocket.CompressionDisabled,
	})
	done()
	if err != nil {
		return nil, fmt.Errorf("dialing %s: %w", hostport, err)
	}
	conn.SetReadLimit(cfg.MaxFrameBytes)
	fail := func(err error) (*Link, error) {
		_ = conn.CloseNow()
		return nil, fmt.Errorf("handshake with %s: %w", hostport, err)
	}
	refuse := func(reason string, cause error) (*Link, error) {
		cfg.Metrics.Rejects.WithLabelValues(reason).Inc()
		return fail(&RejectError{Reason: reason, Message: cause.Error()})
	}
	peerReject := func(m protocol.Message) (*Link, error) {
		var rj protocol.Reject
		if err := m.Decode(&rj); err != nil {
			return refuse(protocol.RejectMalformed, err)
		}
		return fail(&RejectError{Reason: rj.Reason, Message: rj.Message})
	}

	m, err := readOne(ctx, conn)
	if err != nil {
		return fail(err)
	}
	if m.Type == protocol.MsgReject {
		return peerReject(m)
	}
	var ch protocol.Challenge
	if m.Type != protocol.MsgChallenge {
		return refuse(protocol.RejectMalformed, fmt.Errorf("got %v before challenge", m.Type))
	}
	if err := m.Decode(&ch); err != nil {
		return refuse(protocol.RejectMalformed, err)
	}
	if len(ch.Nonce) != nonceLen {
		return refuse(protocol.RejectMalformed, fmt.Errorf("challenge nonce of %d bytes", len(ch.Nonce)))
	}
	var ringVersion uint64
	if cfg.RingVersion != nil {
		ringVersion = cfg.RingVersion()
	}
	draining := cfg.Draining != nil && cfg.Draining()
	var rulesDigest string
	if cfg.RulesDigest != nil {
		rulesDigest = cfg.RulesDigest()
	}
	nonce := newNonce()
	if err := writeMsg(ctx, conn, protocol.MsgHello, protocol.Hello{
		MinProto: protocol.NodeProtoMin, MaxProto: protocol.NodeProtoMax,
		NodeID: cfg.NodeID, Role: cfg.Role, Addr: cfg.Addr, GossipAddr: cfg.GossipAddr,
		RingVersion: ringVersion, Nonce: nonce,
		MAC:      protocol.HelloMAC(cfg.AuthKey, ch.Nonce, cfg.Role, cfg.NodeID, nonce),
		Draining: draining, RulesDigest: rulesDigest,
	}); err != nil {
		return fail(err)
	}
	m, err = readOne(ctx, conn)
	if err != nil {
		return fail(err)
	}
	if m.Type == protocol.MsgReject {
		return peerReject(m)
	}
	if m.Type != protocol.MsgWelcome {
		return refuse(protocol.RejectMalformed, fmt.Errorf("got %v instead of welcome", m.Type))
	}
	var wl protocol.Welcome
	if err := m.Decode(&wl); err != nil {
		return refuse(protocol.RejectMalformed, err)
	}
	if wl.NodeID != ch.NodeID || !hmac.Equal(wl.MAC, protocol.WelcomeMAC(cfg.AuthKey, nonce, wl.NodeID)) {
		return refuse(protocol.RejectAuth, fmt.Errorf("welcome from %q does not verify", wl.NodeID))
	}
	if wl.Proto < protocol.NodeProtoMin || wl.Proto > protocol.NodeProtoMax {
		return refuse(protocol.RejectVersion, fmt.Errorf("peer chose version %d", wl.Proto))
	}
	return newLink(conn, cfg, Peer{
		NodeID: wl.NodeID, Role: ch.Role, Addr: hostport, Proto: wl.Proto, Seeds: wl.Seeds,
	}), nil
}
