package frontend

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/sccgo/sccgo/internal/devcert"
	"github.com/sccgo/sccgo/internal/tlsconf"
)

// clientTLS writes a certificate for 127.0.0.1 and returns the store
// serving it, the CA pool that verifies it and the files.
func clientTLS(t *testing.T) (*tlsconf.Store, *x509.CertPool, *devcert.CA, devcert.Files) {
	t.Helper()
	ca, err := devcert.NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	f, err := ca.WriteIssued(t.TempDir(), "frontend", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	c := tlsconf.DefaultConfig()
	c.CertFile, c.KeyFile, c.ReloadInterval = f.CertFile, f.KeyFile, 0
	st, err := tlsconf.New(c)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.CertPEM)
	return st, pool, ca, f
}

func dialWSS(t *testing.T, srv *Server, pool *x509.CertPool) (*websocket.Conn, *x509.Certificate, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var leaf *x509.Certificate
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, VerifyConnection: func(cs tls.ConnectionState) error {
		leaf = cs.PeerCertificates[0]
		return nil
	}}}
	defer tr.CloseIdleConnections()
	ws, _, err := websocket.Dial(ctx, "wss://"+srv.Addr().String()+"/socketcluster/", &websocket.DialOptions{HTTPClient: &http.Client{Transport: tr}})
	return ws, leaf, err
}

func TestWSSServesClientsAndReloadsCertificate(t *testing.T) {
	st, pool, ca, files := clientTLS(t)
	cfg := testConfig()
	cfg.TLS = st.ServerConfig()
	srv := startServer(t, cfg)

	ws, first, err := dialWSS(t, srv, pool)
	if err != nil {
		t.Fatalf("wss dial: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ws.Write(ctx, websocket.MessageText, []byte(`{"event":"#handshake","data":{},"cid":1}`)); err != nil {
		t.Fatal(err)
	}
	if _, b, err := ws.Read(ctx); err != nil || len(b) == 0 {
		t.Fatalf("handshake reply over wss: %q %v", b, err)
	}
	ws.CloseNow()

	// Plain ws:// to the wss port gets nothing, and is counted.
	if c, _, err := websocket.Dial(ctx, wsURL(srv), nil); err == nil {
		c.CloseNow()
		t.Fatal("plain ws:// upgraded on a wss port")
	}
	waitFor(t, 5*time.Second, "the plain dial counted", func() bool {
		return counter(t, srv.Registry(), "scc_frontend_tls_handshake_failures_total", "reason", "not_tls") == 1
	})

	// Rotate the certificate: the next client sees the new one, no
	// restart.
	next, err := ca.WriteIssued(t.TempDir(), "frontend", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range [][2]string{{next.CertFile, files.CertFile}, {next.KeyFile, files.KeyFile}} {
		b, _ := os.ReadFile(p[0])
		if err := devcert.WriteFile(p[1], b); err != nil {
			t.Fatal(err)
		}
	}
	ws, second, err := dialWSS(t, srv, pool)
	if err != nil {
		t.Fatalf("wss dial after rotation: %v", err)
	}
	ws.CloseNow()
	if first.SerialNumber.Cmp(second.SerialNumber) == 0 {
		t.Fatal("the rotated certificate was not served")
	}
}

// A client that opens TCP and never finishes the TLS handshake is cut
// after HandshakeTimeout, with accepts paced, and does not stop others
// from connecting meanwhile.
func TestWSSStalledHandshakeIsBounded(t *testing.T) {
	st, pool, _, _ := clientTLS(t)
	cfg := testConfig()
	cfg.TLS = st.ServerConfig()
	cfg.HandshakeTimeout = 300 * time.Millisecond
	cfg.MaxHandshakesPerSecond = 1000
	cfg.HandshakeBurst = 100
	cfg.HandshakeQueue = time.Second
	srv := startServer(t, cfg)

	var stalled []net.Conn
	for i := range 20 {
		c, err := net.Dial("tcp", srv.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if i%2 == 1 {
			// Half a TLS record header: the handshake has begun.
			c.Write([]byte{0x16, 0x03, 0x01})
		}
		stalled = append(stalled, c)
	}
	ws, _, err := dialWSS(t, srv, pool)
	if err != nil {
		t.Fatalf("a client behind stalled handshakes: %v", err)
	}
	ws.CloseNow()
	for i, c := range stalled {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err := io.Copy(io.Discard, c)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("stalled connection %d still open after 10s (handshake timeout 300ms)", i)
		}
	}
	waitFor(t, 5*time.Second, "the stalled handshakes counted", func() bool {
		return counter(t, srv.Registry(), "scc_frontend_tls_handshake_failures_total", "reason", "timeout") == float64(len(stalled))
	})
}
