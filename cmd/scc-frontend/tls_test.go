package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sccgo/sccgo/internal/devcert"
)

func TestLoadRejectsIncompleteTLS(t *testing.T) {
	for name, kv := range map[string]map[string]string{
		"link cert without CA":    {"SCC_TLS_CERT_FILE": "c", "SCC_TLS_KEY_FILE": "k"},
		"link CA only":            {"SCC_TLS_CA_FILE": "ca"},
		"client cert without key": {"SCC_CLIENT_TLS_CERT_FILE": "c"},
	} {
		if _, _, err := load(env(kv)); err == nil || !strings.Contains(err.Error(), "tls") {
			t.Errorf("%s: load error %v", name, err)
		}
	}
}

func TestRunServesHTTPSFromClientCertificate(t *testing.T) {
	ca, err := devcert.NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	f, err := ca.WriteIssued(t.TempDir(), "frontend", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		errc <- run(ctx, nil, env(map[string]string{
			"SOCKETCLUSTER_PORT": "0", "SCC_FRONTEND_HOST": "127.0.0.1", "SCC_CLIENT_AUTH_KEY": "client-auth-key-0123456789abcdef0123456789", "SCC_ADMIN_PORT": "0",
			"SCC_DRAIN_DURATION":       "10ms",
			"SCC_CLIENT_TLS_CERT_FILE": f.CertFile, "SCC_CLIENT_TLS_KEY_FILE": f.KeyFile,
		}), &logs)
	}()
	re := regexp.MustCompile(`addr=(127\.0\.0\.1:\d+)`)
	var addr string
	deadline := time.Now().Add(5 * time.Second)
	for addr == "" {
		if m := re.FindStringSubmatch(logs.String()); m != nil {
			addr = m[1]
		} else if time.Now().After(deadline) {
			t.Fatalf("no serving line in %q", logs.String())
		} else {
			time.Sleep(5 * time.Millisecond)
		}
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.CertPEM)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("https://" + addr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("readyz %d", resp.StatusCode)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("run: %v", err)
	}
}
