package clustertest

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/sccgo/sccgo/broker"
)

// BrokerNode is one broker.
type BrokerNode struct {
	c    *Cluster
	Name string
	key  string // SCC_AUTH_KEY override ("" = the cluster's)
	// serveTLS and dialTLS are the broker's link TLS (nil: plain).
	serveTLS *tls.Config
	dialTLS  func() *tls.Config
	addr     string // fixed across restarts, so the ring identity stays
	srv      *broker.Server
	conns    *connTracker // the connections it accepted
	done     chan error
}

// AddBroker starts one more broker. seeds, if given, are its gossip seeds.
func (c *Cluster) AddBroker(seeds ...string) *BrokerNode {
	c.t.Helper()
	return c.AddBrokerWithKey("", seeds...)
}

// AddBrokerWithKey starts a broker whose SCC_AUTH_KEY is key instead of
// the cluster's ("" = the cluster's).
func (c *Cluster) AddBrokerWithKey(key string, seeds ...string) *BrokerNode {
	c.t.Helper()
	c.mu.Lock()
	b := &BrokerNode{c: c, key: key, Name: "broker-" + strconv.Itoa(len(c.Brokers)+1)}
	c.mu.Unlock()
	if st := c.linkTLS(b.Name); st != nil {
		b.serveTLS, b.dialTLS = st.ServerConfig(), st.ClientConfig
	}
	if err := b.start(seeds); err != nil {
		c.t.Fatalf("starting %s: %v", b.Name, err)
	}
	c.mu.Lock()
	c.Brokers = append(c.Brokers, b)
	c.mu.Unlock()
	return b
}

func (b *BrokerNode) running() bool { return b.srv != nil }

// Ready reports whether the broker joined the cluster.
func (b *BrokerNode) Ready() bool { return b.running() && b.ready() }

func (b *BrokerNode) ready() bool {
	select {
	case <-b.srv.Ready():
		return true
	default:
		return false
	}
}

func (b *BrokerNode) gossipAddr() string { return "" }

func (b *BrokerNode) start(seeds []string) error {
	o := b.c.opts
	cfg := broker.DefaultConfig()
	cfg.AuthKey = []byte(o.AuthKey)
	if b.key != "" {
		cfg.AuthKey = []byte(b.key)
	}
	cfg.StateAddr = b.c.stateAddr()
	cfg.GossipBind = "127.0.0.1"
	cfg.GossipPort = 0
	cfg.GossipAdvertise = "127.0.0.1"
	cfg.GossipSeeds = seeds
	cfg.Logger = o.Logger.With("node", b.Name)
	cfg.TLS, cfg.Link.TLS = b.serveTLS, b.dialTLS
	if o.Link != nil {
		o.Link(&cfg.Link)
	}
	if o.Broker != nil {
		o.Broker(&cfg)
	}
	srv, err := broker.New(cfg)
	if err != nil {
		return err
	}
	addr := b.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := listenRetry(addr)
	if err != nil {
		return err
	}
	b.addr = ln.Addr().String()
	b.conns = &connTracker{Listener: ln, conns: make(map[net.Conn]struct{})}
	ln = b.conns
	b.srv = srv
	b.done = make(chan error, 1)
	go func() { b.done <- srv.Serve(ln) }()
	return nil
}

// ID is the broker's ring identity (its address).
func (b *BrokerNode) ID() string { return b.addr }

// Kill stops the broker at once: links drop, nothing is drained.
func (b *BrokerNode) Kill() {
	if b.srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	b.srv.Shutdown(ctx)
	<-b.done
	b.srv = nil
}

// Crash kills the broker as kill -9 would, as far as its peers can
// tell: every connection it accepted is reset at once, with whatever was
// queued or half written, before the server is torn down.
func (b *BrokerNode) Crash() {
	if b.srv == nil {
		return
	}
	b.conns.resetAll()
	b.Kill()
}

// Stop drains the broker out of the cluster (a zero-loss reshard), then
// stops it, as SIGTERM does.
func (b *BrokerNode) Stop(timeout time.Duration) error {
	if b.srv == nil {
		return errors.New("broker not running")
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err := b.srv.Leave(ctx)
	b.Kill()
	return err
}

// Restart starts the broker again at the same address.
func (b *BrokerNode) Restart() {
	b.c.t.Helper()
	if err := b.start(nil); err != nil {
		b.c.t.Fatalf("restarting %s: %v", b.Name, err)
	}
}

// AddBrokerWithTLS starts a broker that serves its port with serve and
// dials the state server with dial instead of the cluster's certificates
// (for example a ForeignTLS store's, or a client configuration that
// withholds the certificate).
func (c *Cluster) AddBrokerWithTLS(serve *tls.Config, dial func() *tls.Config, seeds ...string) *BrokerNode {
	c.t.Helper()
	c.mu.Lock()
	b := &BrokerNode{c: c, serveTLS: serve, dialTLS: dial, Name: "broker-" + strconv.Itoa(len(c.Brokers)+1)}
	c.mu.Unlock()
	if err := b.start(seeds); err != nil {
		c.t.Fatalf("starting %s: %v", b.Name, err)
	}
	c.mu.Lock()
	c.Brokers = append(c.Brokers, b)
	c.mu.Unlock()
	return b
}

// connTracker is a listener that remembers the connections it accepted,
// so a crash can reset them all at once.
type connTracker struct {
	net.Listener
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

func (t *connTracker) Accept() (net.Conn, error) {
	c, err := t.Listener.Accept()
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		c.Close()
		return nil, net.ErrClosed
	}
	t.conns[c] = struct{}{}
	t.mu.Unlock()
	return c, nil
}

// resetAll stops accepting and closes every accepted connection with an
// RST (linger 0), as the kernel does for a killed process.
func (t *connTracker) resetAll() {
	t.mu.Lock()
	t.closed = true
	conns := t.conns
	t.conns = map[net.Conn]struct{}{}
	t.mu.Unlock()
	t.Listener.Close()
	for c := range conns {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		c.Close()
	}
}
