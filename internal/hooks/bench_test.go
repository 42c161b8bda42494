package hooks

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// BenchmarkSubscribe measures one subscribe hook call against a local
// backend that allows at once: the hook's overhead per call (JSON both
// ways, one keep-alive HTTP exchange on loopback, metrics), backend
// included.
func BenchmarkSubscribe(b *testing.B) {
	benchHook(b, func(c *Client) error {
		return c.Subscribe(b.Context(), &SubscribeRequest{
			SocketID: "mE0AsjoS7Htt9l7WAAAB",
			Channel:  "user:42",
			Claims:   map[string]any{"sub": "42", "exp": 1.8e9},
			Data:     json.RawMessage(`{"token":"abc"}`),
		})
	}, `{"result":{}}`)
}

// BenchmarkRPC is BenchmarkSubscribe for an rpc with a small result.
func BenchmarkRPC(b *testing.B) {
	benchHook(b, func(c *Client) error {
		_, err := c.RPC(b.Context(), &RPCRequest{
			SocketID:  "mE0AsjoS7Htt9l7WAAAB",
			Procedure: "chat.history",
			Claims:    map[string]any{"sub": "42"},
			Data:      json.RawMessage(`{"room":"r1","limit":20}`),
		})
		return err
	}, `{"result":{"data":[{"id":1,"text":"hello"},{"id":2,"text":"world"}]}}`)
}

func benchHook(b *testing.B, call func(*Client) error, body string) {
	resp := []byte(body)
	srv := newBackendNoCleanup(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(resp)
	})
	defer srv.Close()
	cfg := testConfig(srv.URL)
	cfg.Registry = prometheus.NewRegistry()
	c, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	b.ReportAllocs()
	for b.Loop() {
		if err := call(c); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSubscribeNoNetwork is BenchmarkSubscribe through a transport
// that answers in memory: the client's own cost per call (request
// encoding, the semaphore, timeout context, answer decoding, metrics).
func BenchmarkSubscribeNoNetwork(b *testing.B) {
	cfg := testConfig("http://backend.invalid/subscribe")
	cfg.Registry = prometheus.NewRegistry()
	c, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	body := `{"result":{}}`
	c.hooks[Subscribe].http.Transport = roundTripFunc(func(r *http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/json"}},
			Body: io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body)), Request: r}, nil
	})
	req := &SubscribeRequest{SocketID: "mE0AsjoS7Htt9l7WAAAB", Channel: "user:42",
		Claims: map[string]any{"sub": "42", "exp": 1.8e9}, Data: json.RawMessage(`{"token":"abc"}`)}
	b.ReportAllocs()
	for b.Loop() {
		if err := c.Subscribe(b.Context(), req); err != nil {
			b.Fatal(err)
		}
	}
}
