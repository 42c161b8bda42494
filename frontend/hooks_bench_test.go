package frontend

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sccgo/sccgo/internal/hooks"
	"github.com/sccgo/sccgo/internal/rules"
)

// BenchmarkDeliveryWhileHooksSlow measures publish-to-delivery latency on
// one socket while other invokes wait on an rpc hook whose backend does
// not answer: hooks run off the socket's reader and off the delivery
// path, so the p99 should not move. ns/op is one publish and its
// delivery; p50-µs and p99-µs are its latency.
func BenchmarkDeliveryWhileHooksSlow(b *testing.B) {
	for _, pending := range []int{0, 64} {
		b.Run(fmt.Sprintf("pending_rpcs=%d", pending), func(b *testing.B) { benchDeliveryHooks(b, pending) })
	}
}

func benchDeliveryHooks(b *testing.B, pending int) {
	release := make(chan struct{})
	var inBackend atomic.Int64
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inBackend.Add(1)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer backend.Close()
	defer close(release)
	hcfg := hooks.DefaultConfig()
	hcfg.RPC.URL = backend.URL
	hcfg.RPC.Timeout = time.Minute
	hcfg.RPC.Concurrency = 128
	hcfg.Registry = prometheus.NewRegistry()
	hc, err := hooks.New(hcfg)
	if err != nil {
		b.Fatal(err)
	}
	defer hc.Close()

	cfg := testConfig()
	cfg.InboundRate = 0
	cfg.AckTimeout = time.Minute
	srv := startServer(b, cfg)
	srv.HandleRPCFallback(func(ctx context.Context, s *Socket, procedure string, data json.RawMessage) (any, error) {
		res, err := hc.RPC(ctx, &hooks.RPCRequest{SocketID: s.ID(), Procedure: procedure, Data: data})
		if err != nil {
			return nil, hooks.ClientError(err)
		}
		return res, nil
	})
	if pending > 0 {
		slow := dial(b, srv)
		slow.handshake("")
		for i := range pending {
			slow.sendf(`{"event":"slow.procedure","data":%d,"cid":%d}`, i, 2+i)
		}
		waitFor(b, 10*time.Second, "invokes waiting at the backend", func() bool { return inBackend.Load() == int64(pending) })
	}
	c := dial(b, srv)
	c.handshake("")
	c.subscribe("bench", 2)
	lat := make([]time.Duration, 0, 1<<16)
	cid := 3
	for b.Loop() {
		start := time.Now()
		c.sendf(`{"event":"#publish","data":{"channel":"bench","data":%d},"cid":%d}`, cid, cid)
		c.packet() // the delivery
		lat = append(lat, time.Since(start))
		c.packet() // the ack
		cid++
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkPublishThroughHook measures a client publish's round trip
// (publish, delivery to the same socket, ack) on a channel that needs no
// hook, and on one whose rule asks the publish hook, answered at once by
// a backend on loopback HTTP: the difference is the hook's cost per
// publish. ns/op is one round trip.
func BenchmarkPublishThroughHook(b *testing.B) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"result":{}}`))
	}))
	defer backend.Close()
	hcfg := hooks.DefaultConfig()
	hcfg.Publish.URL = backend.URL
	hcfg.Registry = prometheus.NewRegistry()
	hc, err := hooks.New(hcfg)
	if err != nil {
		b.Fatal(err)
	}
	defer hc.Close()
	for _, ch := range []string{"free", "hooked:1"} {
		b.Run("channel="+ch, func(b *testing.B) {
			cfg := testConfig()
			cfg.InboundRate = 0
			set, err := rulesSet(hookRules)
			if err != nil {
				b.Fatal(err)
			}
			cfg.Rules = set
			cfg.PublishHook = hc
			srv := startServer(b, cfg)
			c := dial(b, srv)
			c.handshake("")
			c.subscribe("free", 2) // hooked:1 needs the subscribe hook: granted below
			srv.eachSocket(func(s *Socket) { s.subscribeGranted(context.Background(), "hooked:1") })
			cid := 3
			for b.Loop() {
				c.sendf(`{"event":"#publish","data":{"channel":%q,"data":%d},"cid":%d}`, ch, cid, cid)
				c.packet()
				c.packet()
				cid++
			}
		})
	}
}

func rulesSet(doc string) (*rules.Set, error) { return rules.Parse([]byte(doc), rules.YAML) }
