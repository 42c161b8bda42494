package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sccgo/sccgo/internal/devcert"
)

func newCA(t *testing.T, name string) *devcert.CA {
	t.Helper()
	ca, err := devcert.NewCA(name)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func pool(t *testing.T, ca *devcert.CA) *x509.CertPool {
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(ca.CertPEM) {
		t.Fatal("bad CA PEM")
	}
	return p
}

// tlsServer accepts TLS connections with cfg on loopback and records the
// state of each completed handshake.
type tlsServer struct {
	ln     net.Listener
	wg     sync.WaitGroup
	mu     sync.Mutex
	states []tls.ConnectionState
}

func serveTLS(t *testing.T, cfg *tls.Config) *tlsServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &tlsServer{ln: tls.NewListener(ln, cfg)}
	s.wg.Go(func() {
		for {
			c, err := s.ln.Accept()
			if err != nil {
				return
			}
			s.wg.Go(func() {
				defer c.Close()
				tc := c.(*tls.Conn)
				c.SetDeadline(time.Now().Add(5 * time.Second))
				if tc.Handshake() != nil {
					return
				}
				s.mu.Lock()
				s.states = append(s.states, tc.ConnectionState())
				s.mu.Unlock()
				c.Write([]byte("x")) // lets the client see the handshake finished
			})
		}
	})
	t.Cleanup(func() { s.ln.Close(); s.wg.Wait() })
	return s
}

func (s *tlsServer) last() tls.ConnectionState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.states[len(s.states)-1]
}

// dial completes a handshake with the server and returns the server's
// leaf certificate. TLS 1.3 clients finish before the server has checked
// their certificate, so dial reads the server's byte to see its verdict.
func dial(t *testing.T, addr string, cfg *tls.Config) (*x509.Certificate, error) {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err != nil {
		return nil, err
	}
	return c.ConnectionState().PeerCertificates[0], nil
}

func writeNode(t *testing.T, ca *devcert.CA, dir, name string) devcert.Files {
	t.Helper()
	f, err := ca.WriteIssued(dir, name, "127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// replace copies the files of from over to (renames, like a rotated
// Kubernetes secret).
func replace(t *testing.T, from, to devcert.Files) {
	t.Helper()
	for _, p := range [][2]string{{from.CertFile, to.CertFile}, {from.KeyFile, to.KeyFile}, {from.CAFile, to.CAFile}} {
		b, err := os.ReadFile(p[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := devcert.WriteFile(p[1], b); err != nil {
			t.Fatal(err)
		}
	}
}

func TestServerReloadsCertificateWithoutRestart(t *testing.T) {
	ca := newCA(t, "ca")
	dir, next := t.TempDir(), t.TempDir()
	files := writeNode(t, ca, dir, "node")
	cfg := DefaultConfig()
	cfg.CertFile, cfg.KeyFile = files.CertFile, files.KeyFile
	cfg.ReloadInterval = 0
	st, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := serveTLS(t, st.ServerConfig())
	client := &tls.Config{RootCAs: pool(t, ca), ServerName: "127.0.0.1"}

	got, err := dial(t, srv.ln.Addr().String(), client)
	if err != nil {
		t.Fatal(err)
	}
	first := got.SerialNumber

	replace(t, writeNode(t, ca, next, "node"), files)
	got, err = dial(t, srv.ln.Addr().String(), client)
	if err != nil {
		t.Fatal(err)
	}
	if got.SerialNumber.Cmp(first) == 0 {
		t.Fatal("a handshake after the files were replaced still got the old certificate")
	}
	want, _ := tls.LoadX509KeyPair(files.CertFile, files.KeyFile)
	if got.SerialNumber.Cmp(want.Leaf.SerialNumber) != 0 {
		t.Fatal("served certificate is not the one on disk")
	}
}

func TestBrokenFilesKeepTheLoadedCertificate(t *testing.T) {
	ca := newCA(t, "ca")
	files := writeNode(t, ca, t.TempDir(), "node")
	cfg := DefaultConfig()
	cfg.CertFile, cfg.KeyFile, cfg.ReloadInterval = files.CertFile, files.KeyFile, 0
	st, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := serveTLS(t, st.ServerConfig())
	client := &tls.Config{RootCAs: pool(t, ca), ServerName: "127.0.0.1"}
	first, err := dial(t, srv.ln.Addr().String(), client)
	if err != nil {
		t.Fatal(err)
	}
	// A half-written rotation: a new key that does not match the
	// certificate, then the certificate file gone.
	other := writeNode(t, ca, t.TempDir(), "other")
	b, _ := os.ReadFile(other.KeyFile)
	if err := devcert.WriteFile(files.KeyFile, b); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		got, err := dial(t, srv.ln.Addr().String(), client)
		if err != nil {
			t.Fatalf("handshake after a broken rotation: %v", err)
		}
		if got.SerialNumber.Cmp(first.SerialNumber) != 0 {
			t.Fatal("certificate changed to something that does not load")
		}
		os.Remove(files.CertFile)
	}
}

func TestMutualAuthentication(t *testing.T) {
	ca, rogue := newCA(t, "ca"), newCA(t, "rogue")
	dir := t.TempDir()
	files := writeNode(t, ca, dir, "node")
	cfg := DefaultConfig()
	cfg.CertFile, cfg.KeyFile, cfg.CAFile, cfg.RequireCA = files.CertFile, files.KeyFile, files.CAFile, true
	st, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := serveTLS(t, st.ServerConfig())
	addr := srv.ln.Addr().String()

	// A node of the cluster: its certificate verifies both ways.
	if _, err := dial(t, addr, st.ClientConfig()); err != nil {
		t.Fatalf("node to node: %v", err)
	}
	if len(srv.last().VerifiedChains) == 0 {
		t.Fatal("server did not verify the node's certificate")
	}

	// No certificate: the handshake completes, unverified (the link
	// endpoint refuses it; probes of /healthz pass).
	if _, err := dial(t, addr, &tls.Config{RootCAs: pool(t, ca), ServerName: "127.0.0.1"}); err != nil {
		t.Fatalf("no client certificate: %v", err)
	}
	if len(srv.last().VerifiedChains) != 0 || len(srv.last().PeerCertificates) != 0 {
		t.Fatal("a connection without a certificate has a verified chain")
	}

	// A certificate from another CA is refused in the handshake.
	rc, rk, err := rogue.Issue("rogue", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(rc, rk)
	if err != nil {
		t.Fatal(err)
	}
	// (GetClientCertificate sends it although the server asks for ca's.)
	forced := func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil }
	if _, err := dial(t, addr, &tls.Config{RootCAs: pool(t, ca), ServerName: "127.0.0.1", GetClientCertificate: forced}); err == nil {
		t.Fatalf("a certificate from another CA was accepted: %+v", srv.last().VerifiedChains)
	}

	// A server from another CA is refused by the node's client config.
	rogueSrv := serveTLS(t, &tls.Config{Certificates: []tls.Certificate{pair}})
	if _, err := dial(t, rogueSrv.ln.Addr().String(), st.ClientConfig()); err == nil {
		t.Fatal("the node accepted a server certificate from another CA")
	}
}

func TestClientReloadsCertificateAndCA(t *testing.T) {
	ca1, ca2 := newCA(t, "ca1"), newCA(t, "ca2")
	files := writeNode(t, ca1, t.TempDir(), "node")
	cfg := DefaultConfig()
	cfg.CertFile, cfg.KeyFile, cfg.CAFile, cfg.RequireCA, cfg.ReloadInterval = files.CertFile, files.KeyFile, files.CAFile, true, 0
	st, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// The servers are static: one per CA, each trusting only its own.
	serve := func(ca *devcert.CA) *tlsServer {
		c, k, err := ca.Issue("srv", "127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		pair, _ := tls.X509KeyPair(c, k)
		return serveTLS(t, &tls.Config{Certificates: []tls.Certificate{pair}, ClientCAs: pool(t, ca), ClientAuth: tls.RequireAndVerifyClientCert})
	}
	s1, s2 := serve(ca1), serve(ca2)
	if _, err := dial(t, s1.ln.Addr().String(), st.ClientConfig()); err != nil {
		t.Fatalf("before rotation: %v", err)
	}
	if _, err := dial(t, s2.ln.Addr().String(), st.ClientConfig()); err == nil {
		t.Fatal("before rotation, a server of the other CA was accepted")
	}
	// Rotate this node to ca2: its certificate and its CA.
	replace(t, writeNode(t, ca2, t.TempDir(), "node"), files)
	if _, err := dial(t, s2.ln.Addr().String(), st.ClientConfig()); err != nil {
		t.Fatalf("after rotation, the new CA's server: %v", err)
	}
	if _, err := dial(t, s1.ln.Addr().String(), st.ClientConfig()); err == nil {
		t.Fatal("after rotation, the old CA's server was still accepted")
	}
}

func TestReloadIntervalLimitsChecks(t *testing.T) {
	ca := newCA(t, "ca")
	files := writeNode(t, ca, t.TempDir(), "node")
	cfg := DefaultConfig()
	cfg.CertFile, cfg.KeyFile = files.CertFile, files.KeyFile
	cfg.ReloadInterval = time.Hour
	st, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	before := st.current()
	replace(t, writeNode(t, ca, t.TempDir(), "node"), files)
	if st.current() != before {
		t.Fatal("files reloaded before the reload interval passed")
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"off", DefaultConfig(), true},
		{"cert and key", Config{CertFile: "c", KeyFile: "k"}, true},
		{"cert without key", Config{CertFile: "c"}, false},
		{"key without cert", Config{KeyFile: "k"}, false},
		{"mutual without CA", Config{CertFile: "c", KeyFile: "k", RequireCA: true}, false},
		{"mutual with CA only", Config{CAFile: "ca", RequireCA: true}, false},
		{"mutual", Config{CertFile: "c", KeyFile: "k", CAFile: "ca", RequireCA: true}, true},
		{"negative interval", Config{ReloadInterval: -1}, false},
	} {
		if err := tc.cfg.Validate(); (err == nil) != tc.ok {
			t.Errorf("%s: Validate() = %v", tc.name, err)
		}
	}
	if _, err := New(DefaultConfig()); err != ErrNoCertificates {
		t.Errorf("New without files: %v", err)
	}
	if _, err := New(Config{CertFile: filepath.Join(t.TempDir(), "none.pem"), KeyFile: "k"}); err == nil {
		t.Error("New with missing files succeeded")
	}
}

func TestErrorLogCountsHandshakeFailures(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := HandshakeFailures(reg, "broker")
	if HandshakeFailures(reg, "broker") != c {
		t.Fatal("second registration returned another counter")
	}
	l := ErrorLog(c, nil)
	for _, line := range []string{
		"http: TLS handshake error from 127.0.0.1:1: read tcp 127.0.0.1:2->127.0.0.1:1: i/o timeout",
		"http: TLS handshake error from 127.0.0.1:1: client sent an HTTP request to an HTTPS server",
		"http: TLS handshake error from 127.0.0.1:1: tls: first record does not look like a TLS handshake",
		"http: TLS handshake error from 127.0.0.1:1: tls: failed to verify certificate: x509: certificate signed by unknown authority",
		"http: TLS handshake error from 127.0.0.1:1: EOF",
		"http: TLS handshake error from 127.0.0.1:1: tls: unsupported versions",
		"http: panic serving 127.0.0.1:1: boom",
	} {
		l.Print(line)
	}
	for reason, want := range map[string]float64{FailTimeout: 1, FailNotTLS: 2, FailBadCert: 1, FailClosed: 1, FailOther: 1} {
		var m dto.Metric
		if err := c.WithLabelValues(reason).Write(&m); err != nil {
			t.Fatal(err)
		}
		if got := m.GetCounter().GetValue(); got != want {
			t.Errorf("%s: %v, want %v", reason, got, want)
		}
	}
}
