package client_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/sccgo/sccgo/client"
	"github.com/sccgo/sccgo/frontend"
	"github.com/sccgo/sccgo/internal/devcert"
	"github.com/sccgo/sccgo/internal/tlsconf"
)

func TestWSSRoundTripWithPrivateCA(t *testing.T) {
	ca, err := devcert.NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	files, err := ca.WriteIssued(t.TempDir(), "frontend", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	tc := tlsconf.DefaultConfig()
	tc.CertFile, tc.KeyFile = files.CertFile, files.KeyFile
	st, err := tlsconf.New(tc)
	if err != nil {
		t.Fatal(err)
	}
	f := startFrontend(t, "", func(c *frontend.Config) { c.TLS = st.ServerConfig() })
	url := "wss://" + strings.TrimPrefix(f.URL(), "ws://")

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.CertPEM)
	c := dial(t, url, client.Options{TLSConfig: &tls.Config{RootCAs: pool}})
	ctx := ctxT(t, 5*time.Second)
	sub, err := c.Subscribe(ctx, "room", client.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Publish(ctx, "room", json.RawMessage(`"over tls"`)); err != nil {
		t.Fatal(err)
	}
	if m := next(t, sub); string(m.Data) != `"over tls"` {
		t.Fatalf("got %s", m.Data)
	}

	// Without the CA the server is not trusted.
	if c2, err := client.Dial(ctx, url, client.Options{DisableReconnect: true, ConnectTimeout: 2 * time.Second}); err == nil {
		c2.Close()
		t.Fatal("connected to a server signed by an unknown CA")
	}
}
