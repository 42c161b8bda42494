package nodelink

import (
	"bufio"
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sccgo/sccgo/internal/devcert"
	"github.com/sccgo/sccgo/internal/tlsconf"
	"github.com/sccgo/sccgo/protocol"
)

// tlsStore makes a node certificate signed by ca in a temp dir.
func tlsStore(t *testing.T, ca *devcert.CA, name string) *tlsconf.Store {
	t.Helper()
	f, err := ca.WriteIssued(t.TempDir(), name, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	c := tlsconf.DefaultConfig()
	c.CertFile, c.KeyFile, c.CAFile, c.RequireCA = f.CertFile, f.KeyFile, f.CAFile, true
	st, err := tlsconf.New(c)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// startTLSServer is startServer behind a TLS listener.
func startTLSServer(t *testing.T, st *tlsconf.Store) *testServer {
	t.Helper()
	reg := prometheus.NewRegistry()
	s := &testServer{cfg: testConfig("server-1", protocol.RoleBroker, reg), reg: reg, h: newRecorder()}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.ln = tls.NewListener(ln, st.ServerConfig())
	mux := http.NewServeMux()
	mux.HandleFunc(Path, func(w http.ResponseWriter, r *http.Request) {
		s.wg.Add(1)
		defer s.wg.Done()
		l, err := Accept(w, r, s.cfg, nil, nil)
		s.mu.Lock()
		if err != nil {
			s.errs = append(s.errs, err)
		} else if s.stopped {
			l.Close(ReasonShutdown)
		} else {
			s.links = append(s.links, l)
		}
		s.mu.Unlock()
		if err == nil {
			_ = l.Run(s.h)
		}
	})
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	s.wg.Go(func() { _ = s.srv.Serve(s.ln) })
	t.Cleanup(s.stop)
	return s
}

func TestTLSLinkCarriesMessages(t *testing.T) {
	ca, err := devcert.NewCA("cluster")
	if err != nil {
		t.Fatal(err)
	}
	srv := startTLSServer(t, tlsStore(t, ca, "broker"))
	cfg := testConfig("frontend-1", protocol.RoleFrontend, nil)
	cfg.TLS = tlsStore(t, ca, "frontend").ClientConfig
	l := dial(t, srv.addr(), cfg)
	runLink(t, l, newRecorder())
	waitFor(t, "accepted link", func() bool { return len(srv.accepted()) == 1 })
	if err := l.Send(protocol.MsgSubscribe, protocol.Subscribe{ID: 1, Channels: []string{"a"}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "message over TLS", func() bool { return len(srv.h.all()) > 0 })
}

func TestTLSLinkRefusesPeersWithoutClusterCertificate(t *testing.T) {
	ca, err := devcert.NewCA("cluster")
	if err != nil {
		t.Fatal(err)
	}
	rogue, err := devcert.NewCA("rogue")
	if err != nil {
		t.Fatal(err)
	}
	srv := startTLSServer(t, tlsStore(t, ca, "broker"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	// The right key but no certificate: refused before the upgrade.
	noCert := testConfig("frontend-1", protocol.RoleFrontend, nil)
	good := tlsStore(t, ca, "frontend")
	noCert.TLS = func() *tls.Config {
		c := good.ClientConfig()
		c.GetClientCertificate = nil
		return c
	}
	if _, err := Dial(ctx, srv.addr(), noCert); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("dial without a client certificate: %v", err)
	}
	if n := srv.rejects(ReasonNoCert); n != 1 {
		t.Fatalf("rejects{no_cert} = %v, want 1", n)
	}

	// A certificate from another CA: refused in the TLS handshake.
	other := testConfig("frontend-2", protocol.RoleFrontend, nil)
	rs := tlsStore(t, rogue, "rogue")
	other.TLS = func() *tls.Config {
		c := rs.ClientConfig()
		c.RootCAs = good.ClientConfig().RootCAs // it trusts the server
		c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return rs.ClientConfig().GetClientCertificate(nil)
		}
		return c
	}
	if _, err := Dial(ctx, srv.addr(), other); err == nil {
		t.Fatal("a certificate from another CA got a link")
	}

	// Plain WebSocket to the TLS port: no link.
	plain := testConfig("frontend-3", protocol.RoleFrontend, nil)
	if _, err := Dial(ctx, srv.addr(), plain); err == nil {
		t.Fatal("a plain dial got a link on a TLS port")
	}
	if got := srv.accepted(); len(got) != 0 {
		t.Fatalf("%d links accepted", len(got))
	}
}

// A relay without the certificates sees only TLS records: a plaintext
// request to the port gets no HTTP answer from the link endpoint, and
// bytes sent by a node to a relay pretending to be the broker never
// include the handshake in clear.
func TestTLSLinkIsNotReadableInTransit(t *testing.T) {
	ca, err := devcert.NewCA("cluster")
	if err != nil {
		t.Fatal(err)
	}
	// A relay listens where the node dials, records what arrives, and
	// forwards nothing.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- ""
			return
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		b, _ := bufio.NewReader(c).Peek(16)
		got <- string(b)
	}()
	defer ln.Close()
	cfg := testConfig("frontend-1", protocol.RoleFrontend, nil)
	cfg.TLS = tlsStore(t, ca, "frontend").ClientConfig
	cfg.HandshakeTimeout = 300 * time.Millisecond
	_, err = Dial(context.Background(), ln.Addr().String(), cfg)
	if err == nil {
		t.Fatal("dial through a mute relay succeeded")
	}
	first := <-got
	if strings.Contains(first, "GET") || strings.Contains(first, Path) {
		t.Fatalf("the relay read the request in clear: %q", first)
	}
	if len(first) == 0 || first[0] != 0x16 { // TLS handshake record
		t.Fatalf("the relay got %q, not a TLS ClientHello", first)
	}
}

// countingHandler counts messages and ticks every 4096.
type countingHandler struct {
	n    atomic.Int64
	tick chan struct{}
}

func (h *countingHandler) HandleMessages(_ *Link, msgs []protocol.Message) {
	before := h.n.Load()
	after := h.n.Add(int64(len(msgs)))
	if before/4096 != after/4096 {
		select {
		case h.tick <- struct{}{}:
		default:
		}
	}
}

func (h *countingHandler) Closed(*Link, error) {}

// BenchmarkLinkThroughput sends 256-byte publishes over one link, plain
// and over TLS: the difference is the cost of TLS on links per message.
func BenchmarkLinkThroughput(b *testing.B) {
	ca, err := devcert.NewCA("bench")
	if err != nil {
		b.Fatal(err)
	}
	store := func(name string) *tlsconf.Store {
		f, err := ca.WriteIssued(b.TempDir(), name, "127.0.0.1")
		if err != nil {
			b.Fatal(err)
		}
		c := tlsconf.DefaultConfig()
		c.CertFile, c.KeyFile, c.CAFile, c.RequireCA = f.CertFile, f.KeyFile, f.CAFile, true
		st, err := tlsconf.New(c)
		if err != nil {
			b.Fatal(err)
		}
		return st
	}
	for _, mode := range []string{"plain", "tls"} {
		b.Run(mode, func(b *testing.B) {
			h := &countingHandler{tick: make(chan struct{}, 1)}
			reg := prometheus.NewRegistry()
			srvCfg := testConfig("broker-1", protocol.RoleBroker, reg)
			mux := http.NewServeMux()
			var wg sync.WaitGroup
			mux.HandleFunc(Path, func(w http.ResponseWriter, r *http.Request) {
				l, err := Accept(w, r, srvCfg, nil, nil)
				if err != nil {
					return
				}
				wg.Go(func() { _ = l.Run(h) })
			})
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			cfg := testConfig("frontend-1", protocol.RoleFrontend, nil)
			if mode == "tls" {
				ln = tls.NewListener(ln, store("broker").ServerConfig())
				cfg.TLS = store("frontend").ClientConfig
			}
			hs := &http.Server{Handler: mux}
			go hs.Serve(ln)
			defer func() { hs.Close(); wg.Wait() }()
			l, err := Dial(context.Background(), ln.Addr().String(), cfg)
			if err != nil {
				b.Fatal(err)
			}
			done := make(chan struct{})
			go func() { defer close(done); _ = l.Run(newRecorder()) }()
			defer func() { l.Close(ReasonShutdown); <-done }()

			msg, err := protocol.AppendMessage(nil, protocol.MsgPublish, protocol.Publish{Channel: "bench-channel", Data: make([]byte, 256)})
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := cpuTime()
			for i := 1; i <= b.N; i++ {
				l.SendRaw(msg)
				if i%4096 == 0 {
					for int64(i)-h.n.Load() > 16384 {
						<-h.tick
					}
				}
			}
			for h.n.Load() < int64(b.N) {
				select {
				case <-h.tick:
				case <-time.After(time.Millisecond):
				}
			}
			// CPU time of both ends, which other load on the machine
			// inflates less than wall time.
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// cpuTime is this process's user and system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
