package clustertest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sccgo/sccgo/broker"
	"github.com/sccgo/sccgo/frontend"
	"github.com/sccgo/sccgo/frontend/cluster"
	"github.com/sccgo/sccgo/internal/devcert"
	"github.com/sccgo/sccgo/internal/gossip"
	"github.com/sccgo/sccgo/internal/nodelink"
	"github.com/sccgo/sccgo/internal/testwait"
	"github.com/sccgo/sccgo/state"
)

// Options shapes a test cluster. Zero delays are test-friendly defaults,
// far shorter than production's.
type Options struct {
	Brokers   int
	Frontends int
	// AuthKey is SCC_AUTH_KEY for every node (default "test-cluster-key-0123456789abcdef0123456789").
	AuthKey string
	// ScaleOutDelay, ScaleBackDelay, StartupDelay, PrepareTimeout and
	// DrainWindow configure the state server (defaults 200ms, 300ms, 0,
	// 3s, 300ms).
	ScaleOutDelay, ScaleBackDelay, StartupDelay, PrepareTimeout, DrainWindow time.Duration
	// NoState starts no state server (gossip only).
	NoState bool
	// TLS puts every link (frontend to broker, node to state server) on
	// mutual TLS, each node with its own certificate from a throwaway CA.
	TLS bool
	// ClientTLS makes frontends serve wss:// (URL and FrontendURLs say
	// so); clients trust it with ClientTLSConfig.
	ClientTLS bool
	// Frontend, if set, adjusts every frontend's configuration before it
	// starts (for example to set the server API key).
	Frontend func(*frontend.Config)
	// Broker, if set, adjusts every broker's configuration before it
	// starts (for example to give it channel rules).
	Broker func(*broker.Config)
	// Link, if set, adjusts every node's link configuration (the state
	// server's, each broker's and each frontend's) before it starts, for
	// example to set its frame and queue limits.
	Link func(*nodelink.Config)
	// Logger receives every node's logs; nil discards them unless
	// SCC_TEST_LOG is set, which sends them to stderr.
	Logger *slog.Logger
}

func (o *Options) fill() {
	if o.AuthKey == "" {
		o.AuthKey = "test-cluster-key-0123456789abcdef0123456789"
	}
	if o.ScaleOutDelay == 0 {
		o.ScaleOutDelay = 200 * time.Millisecond
	}
	if o.ScaleBackDelay == 0 {
		o.ScaleBackDelay = 300 * time.Millisecond
	}
	if o.PrepareTimeout == 0 {
		o.PrepareTimeout = 3 * time.Second
	}
	if o.DrainWindow == 0 {
		o.DrainWindow = 300 * time.Millisecond
	}
	if o.Logger == nil {
		if os.Getenv("SCC_TEST_LOG") != "" {
			o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
		} else {
			o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
		}
	}
}

// Cluster is a running test cluster.
type Cluster struct {
	t    testing.TB
	opts Options

	ca      *devcert.CA // with TLS or ClientTLS
	certDir string

	mu        sync.Mutex
	State     *StateNode
	Brokers   []*BrokerNode
	Frontends []*FrontendNode
}

// Start starts a cluster and waits until every frontend is ready. The
// cluster is closed when the test ends.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	opts.fill()
	c := &Cluster{t: t, opts: opts}
	t.Cleanup(c.Close)
	c.tlsSetup()
	if !opts.NoState {
		c.State = &StateNode{c: c}
		if err := c.State.start(); err != nil {
			t.Fatalf("starting state server: %v", err)
		}
	}
	for i := 0; i < opts.Brokers; i++ {
		c.AddBroker()
	}
	for i := 0; i < opts.Frontends; i++ {
		c.AddFrontend()
	}
	c.WaitReady(20 * time.Second)
	return c
}

// WaitFor polls cond (testwait.For) until it is true, failing the test at the
// timeout.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	testwait.For(t, timeout, what, cond)
}

// WaitReady waits until every running frontend and broker reports ready.
func (c *Cluster) WaitReady(timeout time.Duration) {
	c.t.Helper()
	WaitFor(c.t, timeout, "every node ready", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, f := range c.Frontends {
			if f.running() && !f.srv.IsReady() {
				return false
			}
		}
		for _, b := range c.Brokers {
			if b.running() && !b.ready() {
				return false
			}
		}
		return true
	})
}

// WaitRing waits until every running frontend publishes by a ring with
// exactly the given broker count and a version above minVersion, and
// returns that version.
func (c *Cluster) WaitRing(timeout time.Duration, brokers int, minVersion uint64) uint64 {
	c.t.Helper()
	var v uint64
	WaitFor(c.t, timeout, fmt.Sprintf("a ring of %d brokers above version %d on every frontend", brokers, minVersion), func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		v = 0
		for _, f := range c.Frontends {
			if !f.running() {
				continue
			}
			r := f.node.Router()
			if r.RingVersion() <= minVersion || r.RingBrokers() != brokers || !r.Ready() {
				return false
			}
			v = r.RingVersion()
		}
		return true
	})
	return v
}

// WaitBrokersAt waits until every running broker has committed ring
// version v, so that no reshard is under way.
func (c *Cluster) WaitBrokersAt(timeout time.Duration, v uint64) {
	c.t.Helper()
	WaitFor(c.t, timeout, fmt.Sprintf("every broker at ring version %d", v), func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, b := range c.Brokers {
			if b.running() && b.srv.RingVersion() != v {
				return false
			}
		}
		return true
	})
}

// FrontendURLs returns the WebSocket URLs of the running frontends.
func (c *Cluster) FrontendURLs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, f := range c.Frontends {
		if f.running() {
			out = append(out, f.URL())
		}
	}
	return out
}

// GossipSeeds returns the gossip addresses of the running nodes.
func (c *Cluster) GossipSeeds() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	if c.State != nil && c.State.running() {
		out = append(out, c.State.srv.GossipAddr())
	}
	for _, b := range c.Brokers {
		if b.running() {
			if a := b.gossipAddr(); a != "" {
				out = append(out, a)
			}
		}
	}
	for _, f := range c.Frontends {
		if f.running() {
			if a := f.node.Agent().GossipAddr(); a != "" {
				out = append(out, a)
			}
		}
	}
	return out
}

func (c *Cluster) stateAddr() string {
	if c.State == nil {
		return ""
	}
	return c.State.addr
}

// testGossip is fast failure detection for loopback tests.
func testGossip() *gossip.Config {
	g := gossip.DefaultConfig()
	return &g
}

// Close stops every node.
func (c *Cluster) Close() {
	c.mu.Lock()
	fs, bs, st := c.Frontends, c.Brokers, c.State
	c.mu.Unlock()
	for _, f := range fs {
		f.Kill()
	}
	for _, b := range bs {
		b.Kill()
	}
	if st != nil {
		st.Kill()
	}
}

// StateNode is the cluster's state server.
type StateNode struct {
	c    *Cluster
	reg  *prometheus.Registry
	addr string // fixed across restarts
	srv  *state.Server
	done chan error
}

func (s *StateNode) running() bool { return s.srv != nil }

func (s *StateNode) start() error {
	o := s.c.opts
	cfg := state.DefaultConfig()
	cfg.AuthKey = []byte(o.AuthKey)
	cfg.ScaleOutDelay = o.ScaleOutDelay
	cfg.ScaleBackDelay = o.ScaleBackDelay
	cfg.StartupDelay = o.StartupDelay
	cfg.PrepareTimeout = o.PrepareTimeout
	cfg.DrainWindow = o.DrainWindow
	cfg.GossipBind = "127.0.0.1"
	cfg.GossipPort = 0
	cfg.GossipAdvertise = "127.0.0.1"
	cfg.Gossip = testGossip()
	cfg.ShutdownTimeout = 200 * time.Millisecond
	cfg.Logger = o.Logger.With("node", "state")
	s.reg = prometheus.NewRegistry()
	cfg.Registry = s.reg
	if st := s.c.linkTLS("state"); st != nil {
		cfg.TLS = st.ServerConfig()
	}
	if o.Link != nil {
		o.Link(&cfg.Link)
	}
	srv, err := state.New(cfg)
	if err != nil {
		return err
	}
	addr := s.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := listenRetry(addr)
	if err != nil {
		return err
	}
	s.addr = ln.Addr().String()
	s.srv = srv
	s.done = make(chan error, 1)
	go func() { s.done <- srv.Serve(ln) }()
	select {
	case <-srv.Ready():
	case err := <-s.done:
		s.srv = nil
		return fmt.Errorf("state server stopped at start: %w", err)
	case <-time.After(10 * time.Second):
		return errors.New("state server not ready in 10s")
	}
	return nil
}

// Kill stops the state server at once.
func (s *StateNode) Kill() {
	if s.srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s.srv.Shutdown(ctx)
	<-s.done
	s.srv = nil
}

// Restart starts the state server again at the same address.
func (s *StateNode) Restart() {
	s.c.t.Helper()
	if err := s.start(); err != nil {
		s.c.t.Fatalf("restarting state server: %v", err)
	}
}

// AdminHandler serves the state server's /status, /metrics and pages.
func (s *StateNode) AdminHandler() http.Handler { return s.srv.AdminHandler() }

// Status returns the state server's view.
func (s *StateNode) Status() state.Status {
	st, err := s.srv.Status(context.Background())
	if err != nil {
		s.c.t.Fatalf("state status: %v", err)
	}
	return st
}

// FrontendNode is one frontend with its cluster membership.
type FrontendNode struct {
	c    *Cluster
	Name string
	srv  *frontend.Server
	node *cluster.Node
	addr string
	done chan error
}

// AddFrontend starts one more frontend. seeds, if given, are its gossip
// seeds (needed when the state server is down).
func (c *Cluster) AddFrontend(seeds ...string) *FrontendNode {
	c.t.Helper()
	c.mu.Lock()
	f := &FrontendNode{c: c, Name: "frontend-" + strconv.Itoa(len(c.Frontends)+1)}
	c.mu.Unlock()
	if err := f.start(seeds); err != nil {
		c.t.Fatalf("starting %s: %v", f.Name, err)
	}
	c.mu.Lock()
	c.Frontends = append(c.Frontends, f)
	c.mu.Unlock()
	return f
}

func (f *FrontendNode) running() bool { return f.srv != nil }

func (f *FrontendNode) start(seeds []string) error {
	o := f.c.opts
	log := o.Logger.With("node", f.Name)
	nc := cluster.NodeConfig{
		NodeID:          f.Name,
		AuthKey:         []byte(o.AuthKey),
		StateAddr:       f.c.stateAddr(),
		GossipBind:      "127.0.0.1",
		GossipPort:      0,
		GossipAdvertise: "127.0.0.1",
		GossipSeeds:     seeds,
		Broker:          cluster.DefaultConfig(),
		Logger:          log,
	}
	nc.Broker.DrainWindow = o.DrainWindow
	nc.Link = nodelink.DefaultConfig()
	if st := f.c.linkTLS(f.Name); st != nil {
		nc.Link.TLS = st.ClientConfig
	}
	if o.Link != nil {
		o.Link(&nc.Link)
	}
	reg := prometheus.NewRegistry()
	nc.Registry = reg
	node, err := cluster.NewNode(nc)
	if err != nil {
		return err
	}
	cfg := frontend.DefaultConfig()
	cfg.Broker = node.Broker()
	cfg.Registry = reg
	cfg.Logger = log
	cfg.ServeAdmin = true
	cfg.DrainDuration = 0
	if o.ClientTLS {
		cfg.TLS = f.c.storeFor(f.c.ca, f.Name+"-clients").ServerConfig()
	}
	if o.Frontend != nil {
		o.Frontend(&cfg)
	}
	srv, err := frontend.New(cfg)
	if err != nil {
		return err
	}
	addr := f.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := listenRetry(addr)
	if err != nil {
		return err
	}
	f.addr = ln.Addr().String()
	f.srv, f.node = srv, node
	f.done = make(chan error, 1)
	go func() { f.done <- srv.Serve(ln) }()
	return nil
}

// Addr is the frontend's host:port (WebSocket, admin endpoints and the
// server API).
func (f *FrontendNode) Addr() string { return f.addr }

// URL is the frontend's WebSocket URL.
func (f *FrontendNode) URL() string {
	if f.c.opts.ClientTLS {
		return "wss://" + f.addr + "/socketcluster/"
	}
	return "ws://" + f.addr + "/socketcluster/"
}

// Server returns the frontend server.
func (f *FrontendNode) Server() *frontend.Server { return f.srv }

// Router returns the frontend's cluster router.
func (f *FrontendNode) Router() *cluster.Broker { return f.node.Router() }

// Kill stops the frontend at once (clients see their connection close).
func (f *FrontendNode) Kill() {
	if f.srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	f.srv.Shutdown(ctx)
	<-f.done
	f.srv = nil
}

// listenRetry listens on addr, retrying briefly while a previous listener
// on the same port is still closing.
func listenRetry(addr string) (net.Listener, error) {
	var err error
	for i := 0; i < 100; i++ {
		var ln net.Listener
		ln, err = net.Listen("tcp", addr)
		if err == nil {
			return ln, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil, err
}

// httpGet fetches a URL with a short timeout.
func httpGet(url string) (int, error) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// RouteDrops sums scc_frontend_route_drops_total over the running
// frontends.
func (c *Cluster) RouteDrops() float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var n float64
	for _, f := range c.Frontends {
		if !f.running() {
			continue
		}
		mfs, err := f.srv.Registry().Gather()
		if err != nil {
			continue
		}
		for _, mf := range mfs {
			if mf.GetName() == "scc_frontend_route_drops_total" {
				for _, m := range mf.GetMetric() {
					n += m.GetCounter().GetValue()
				}
			}
		}
	}
	return n
}

// StateRejects returns scc_state_link_rejects_total for reason.
func (c *Cluster) StateRejects(reason string) float64 {
	if c.State == nil || c.State.reg == nil {
		return 0
	}
	return counterValue(c.State.reg, "scc_state_link_rejects_total", "reason", reason)
}

func counterValue(reg *prometheus.Registry, name, label, value string) float64 {
	mfs, err := reg.Gather()
	if err != nil {
		return 0
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					n += m.GetCounter().GetValue()
				}
			}
		}
	}
	return n
}

// Restart starts a stopped frontend again at the same address.
func (f *FrontendNode) Restart(seeds ...string) {
	f.c.t.Helper()
	if f.srv != nil {
		f.c.t.Fatalf("%s is running", f.Name)
	}
	if err := f.start(seeds); err != nil {
		f.c.t.Fatalf("restarting %s: %v", f.Name, err)
	}
}

// FrontendCounter sums the counter name{label=value} over the running
// frontends (every series of name when label is "").
func (c *Cluster) FrontendCounter(name, label, value string) float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var n float64
	for _, f := range c.Frontends {
		if !f.running() {
			continue
		}
		mfs, err := f.srv.Registry().Gather()
		if err != nil {
			continue
		}
		for _, mf := range mfs {
			if mf.GetName() != name {
				continue
			}
			for _, m := range mf.GetMetric() {
				match := label == ""
				for _, lp := range m.GetLabel() {
					if lp.GetName() == label && lp.GetValue() == value {
						match = true
					}
				}
				if match {
					n += m.GetCounter().GetValue()
				}
			}
		}
	}
	return n
}
