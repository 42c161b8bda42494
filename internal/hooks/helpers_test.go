package hooks

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"

	"github.com/sccgo/sccgo/internal/testwait"
)

// backend is an httptest server that counts the requests it got.
type backend struct {
	*httptest.Server
	hits atomic.Int64
}

// newBackend starts a backend on 127.0.0.1:0 that answers with h; the
// test closes it.
func newBackend(t *testing.T, h http.HandlerFunc) *backend {
	t.Helper()
	b := &backend{}
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		h(w, r)
	}))
	t.Cleanup(b.Close)
	return b
}

// answer returns a handler that writes body as application/json.
func answer(body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(body))
	}
}

// testConfig returns DefaultConfig with every hook pointed at url and
// short retry backoff.
func testConfig(url string) Config {
	cfg := DefaultConfig()
	for k := Kind(0); k < numKinds; k++ {
		cfg.Hook(k).URL = url
	}
	cfg.RetryBackoff = time.Millisecond
	return cfg
}

// newClient returns a Client for cfg on a fresh registry, closed when the
// test ends (before the backends it uses, which were started first).
func newClient(t *testing.T, cfg Config) *Client {
	t.Helper()
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// calls returns the count of hook k's calls with outcome o.
func calls(c *Client, k Kind, o outcome) float64 {
	ctr := c.hooks[k].m.calls[o]
	if ctr == nil {
		return 0
	}
	return testutilCount(ctr)
}

// deadAddr returns the URL of a loopback port nothing listens on.
func deadURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr + "/hook"
}

// waitFor polls cond until it holds or a generous deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testwait.For(t, 10*time.Second, what, cond)
}

func ctx(t *testing.T) context.Context { return t.Context() }

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

type atomicInt struct{ v atomic.Int64 }

func (a *atomicInt) add(n int64) { a.v.Add(n) }
func (a *atomicInt) load() int64 { return a.v.Load() }

func testutilCount(c prometheus.Counter) float64 {
	var m dto.Metric
	c.Write(&m)
	return m.GetCounter().GetValue()
}

func testutilGauge(g prometheus.Gauge) float64 {
	var m dto.Metric
	g.Write(&m)
	return m.GetGauge().GetValue()
}

// goleakVerify checks that the test left no goroutine behind; defer it
// first so that it runs after the test's other deferred closes.
func goleakVerify(t *testing.T) {
	t.Helper()
	goleak.VerifyNone(t)
}

// newBackendNoCleanup is newBackend for tests that close it themselves,
// before a leak check.
func newBackendNoCleanup(h http.HandlerFunc) *backend {
	b := &backend{}
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		h(w, r)
	}))
	return b
}

// runtimeMem is the process's cumulative allocation.
type runtimeMem struct{ total uint64 }

func (m *runtimeMem) read() {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	m.total = ms.TotalAlloc
}
