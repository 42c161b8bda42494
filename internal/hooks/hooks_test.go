package hooks

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sccgo/sccgo/protocol"
)

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	cases := []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"not http", func(c *Config) { c.Subscribe.URL = "ftp://x/y" }, "SCC_PROXY_SUBSCRIBE_URL"},
		{"no host", func(c *Config) { c.Connect.URL = "http:///x" }, "SCC_PROXY_CONNECT_URL"},
		{"zero timeout", func(c *Config) { c.RPC.Timeout = 0 }, "SCC_PROXY_RPC_TIMEOUT"},
		{"zero concurrency", func(c *Config) { c.Publish.Concurrency = 0 }, "SCC_PROXY_PUBLISH_CONCURRENCY"},
		{"publish retries", func(c *Config) { c.Publish.Retries = 1 }, "SCC_PROXY_PUBLISH_RETRIES"},
		{"rpc retries", func(c *Config) { c.RPC.Retries = 1 }, "SCC_PROXY_RPC_RETRIES"},
		{"too many retries", func(c *Config) { c.Subscribe.Retries = 11 }, "SCC_PROXY_SUBSCRIBE_RETRIES"},
		{"rpc fail open", func(c *Config) { c.RPC.FailOpen = true }, "SCC_PROXY_RPC_FAIL_OPEN"},
		{"bad header", func(c *Config) { c.ConnectHeaders = []string{"Bad Header"} }, "SCC_PROXY_CONNECT_HEADERS"},
		{"bad key header", func(c *Config) { c.KeyHeader = "" }, "SCC_PROXY_KEY_HEADER"},
		{"key with newline", func(c *Config) { c.Key = "a\r\nX-Evil: 1" }, "SCC_PROXY_KEY"},
		{"tiny body bound", func(c *Config) { c.MaxResponseBytes = 10 }, "SCC_PROXY_MAX_RESPONSE_BYTES"},
		{"huge body bound", func(c *Config) { c.MaxResponseBytes = 1 << 40 }, "SCC_PROXY_MAX_RESPONSE_BYTES"},
		{"negative backoff", func(c *Config) { c.RetryBackoff = -1 }, "SCC_PROXY_RETRY_BACKOFF"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.edit(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want an error naming %s", err, tc.want)
			}
			if _, err := New(c); err == nil {
				t.Fatal("New accepted an invalid config")
			}
		})
	}
}

func TestDisabledHooks(t *testing.T) {
	c := newClient(t, DefaultConfig())
	for k := Kind(0); k < numKinds; k++ {
		if c.Enabled(k) {
			t.Errorf("%s enabled without a URL", k)
		}
	}
	if _, err := c.Connect(ctx(t), &ConnectRequest{}); !errors.Is(err, ErrDisabled) {
		t.Errorf("Connect: %v", err)
	}
	if err := c.Subscribe(ctx(t), &SubscribeRequest{}); !errors.Is(err, ErrDisabled) {
		t.Errorf("Subscribe: %v", err)
	}
	if _, err := c.Publish(ctx(t), &PublishRequest{}); !errors.Is(err, ErrDisabled) {
		t.Errorf("Publish: %v", err)
	}
	if _, err := c.RPC(ctx(t), &RPCRequest{}); !errors.Is(err, ErrDisabled) {
		t.Errorf("RPC: %v", err)
	}
}

func TestConnectRequestAndResult(t *testing.T) {
	var mu sync.Mutex
	var got map[string]any
	var gotHeader http.Header
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		gotHeader = r.Header.Clone()
		json.Unmarshal(body, &got)
		mu.Unlock()
		answer(`{"result":{"claims":{"sub":"42","role":"admin"},"token":"t.o.k","channels":["user:42","news"]}}`)(w, r)
	})
	cfg := testConfig(b.URL + "/connect")
	cfg.Key = "s3cret"
	c := newClient(t, cfg)
	h := http.Header{}
	h.Add("Cookie", "a=1")
	h.Add("Cookie", "b=2")
	h.Set("Authorization", "Bearer x")
	h.Set("X-Private", "must not be sent")
	res, err := c.Connect(ctx(t), &ConnectRequest{
		SocketID:      "sock1",
		RemoteAddress: "10.0.0.7",
		AuthToken:     "raw.jwt.here",
		Claims:        map[string]any{"sub": "41"},
		Header:        h,
	})
	if err != nil {
		t.Fatal(err)
	}
	want := &ConnectResult{Claims: map[string]any{"sub": "42", "role": "admin"}, Token: "t.o.k", Channels: []string{"user:42", "news"}}
	if !reflect.DeepEqual(res, want) {
		t.Errorf("result %+v, want %+v", res, want)
	}
	mu.Lock()
	defer mu.Unlock()
	wantReq := map[string]any{
		"socketId":      "sock1",
		"remoteAddress": "10.0.0.7",
		"headers":       map[string]any{"Cookie": "a=1; b=2", "Authorization": "Bearer x"},
		"authToken":     "raw.jwt.here",
		"claims":        map[string]any{"sub": "41"},
	}
	if !reflect.DeepEqual(got, wantReq) {
		t.Errorf("request %v, want %v", got, wantReq)
	}
	if v := gotHeader.Get("X-SCC-Hook-Key"); v != "s3cret" {
		t.Errorf("key header %q", v)
	}
	if v := gotHeader.Get("Content-Type"); v != "application/json" {
		t.Errorf("content type %q", v)
	}
	if calls(c, Connect, outAllow) != 1 {
		t.Errorf("allow count %v", calls(c, Connect, outAllow))
	}
}

func TestConnectReject(t *testing.T) {
	cases := []struct {
		body     string
		wantCode int
		wantErr  *protocol.Error
	}{
		{`{"error":{"name":"AuthError","message":"banned"},"code":4403}`, 4403, protocol.NewError("AuthError", "banned")},
		{`{"error":{"name":"AuthError","message":"banned"},"code":1008}`, 1008, protocol.NewError("AuthError", "banned")},
		{`{"error":{"name":"AuthError","message":"banned"}}`, DefaultRejectCode, protocol.NewError("AuthError", "banned")},
		{`{"error":{"message":"bad code"},"code":3000}`, DefaultRejectCode, protocol.NewError("", "bad code")},
		{`{"error":{"message":"not a number"},"code":"x"}`, DefaultRejectCode, protocol.NewError("", "not a number")},
		{`{"error":"just a string","code":4100}`, 4100, protocol.NewError("", "just a string")},
		// An error wins over a result, and one that is not an object still denies.
		{`{"result":{},"error":42}`, DefaultRejectCode, protocol.NewError(ErrNameBackend, "Rejected by the application backend")},
	}
	for _, tc := range cases {
		t.Run(tc.body, func(t *testing.T) {
			b := newBackend(t, answer(tc.body))
			cfg := testConfig(b.URL)
			cfg.Connect.FailOpen = true // a denial is not a failure
			c := newClient(t, cfg)
			res, err := c.Connect(ctx(t), &ConnectRequest{SocketID: "s"})
			var r *Rejection
			if !errors.As(err, &r) || !errors.Is(err, ErrRejected) {
				t.Fatalf("Connect = %+v, %v; want a rejection", res, err)
			}
			if CloseCode(err) != tc.wantCode {
				t.Errorf("code %d, want %d", CloseCode(err), tc.wantCode)
			}
			if !reflect.DeepEqual(ClientError(err), tc.wantErr) {
				t.Errorf("client error %+v, want %+v", ClientError(err), tc.wantErr)
			}
			if calls(c, Connect, outDeny) != 1 {
				t.Errorf("deny count %v", calls(c, Connect, outDeny))
			}
		})
	}
}

func TestSubscribeAllowDeny(t *testing.T) {
	var gotReq SubscribeRequest
	var mu sync.Mutex
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		var req SubscribeRequest
		json.NewDecoder(r.Body).Decode(&req)
		mu.Lock()
		gotReq = req
		mu.Unlock()
		if req.Channel == "user:42" && req.Claims["sub"] == "42" {
			answer(`{"result":{}}`)(w, r)
			return
		}
		answer(`{"error":{"name":"SubscribeBlockedError","message":"not yours","channel":"`+req.Channel+`"}}`)(w, r)
	})
	c := newClient(t, testConfig(b.URL))
	err := c.Subscribe(ctx(t), &SubscribeRequest{SocketID: "s1", Channel: "user:42", Claims: map[string]any{"sub": "42"}, Data: json.RawMessage(`{"token":"x"}`)})
	if err != nil {
		t.Fatalf("allowed subscribe: %v", err)
	}
	mu.Lock()
	if gotReq.SocketID != "s1" || string(gotReq.Data) != `{"token":"x"}` {
		t.Errorf("request %+v", gotReq)
	}
	mu.Unlock()
	err = c.Subscribe(ctx(t), &SubscribeRequest{SocketID: "s2", Channel: "user:42", Claims: map[string]any{"sub": "43"}})
	if !errors.Is(err, ErrRejected) {
		t.Fatalf("denied subscribe: %v", err)
	}
	want := protocol.NewError("SubscribeBlockedError", "not yours", "channel", "user:42")
	if got := ClientError(err); !reflect.DeepEqual(got, want) {
		t.Errorf("client error %+v, want %+v", got, want)
	}
	if calls(c, Subscribe, outAllow) != 1 || calls(c, Subscribe, outDeny) != 1 {
		t.Errorf("allow %v deny %v", calls(c, Subscribe, outAllow), calls(c, Subscribe, outDeny))
	}
}

func TestPublishAllowReplaceDeny(t *testing.T) {
	cases := []struct {
		body    string
		data    string // "" means unchanged
		out     outcome
		blocked bool
	}{
		{`{"result":{}}`, "", outAllow, false},
		{`{"result":{"data":{"text":"[censored]"}}}`, `{"text":"[censored]"}`, outReplace, false},
		{`{"result":{"data":null}}`, `null`, outReplace, false},
		{`{"result":{"data":"plain"}}`, `"plain"`, outReplace, false},
		{`{"error":{"name":"PublishBlockedError","message":"read-only room"}}`, "", outDeny, true},
	}
	for _, tc := range cases {
		t.Run(tc.body, func(t *testing.T) {
			var got PublishRequest
			var mu sync.Mutex
			b := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				json.NewDecoder(r.Body).Decode(&got)
				mu.Unlock()
				answer(tc.body)(w, r)
			})
			c := newClient(t, testConfig(b.URL))
			res, err := c.Publish(ctx(t), &PublishRequest{SocketID: "s", Channel: "room:1", Data: json.RawMessage(`{"text":"darn"}`)})
			if tc.blocked {
				if !errors.Is(err, ErrRejected) || ClientError(err).Name != "PublishBlockedError" {
					t.Fatalf("Publish = %v, want PublishBlockedError", err)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				if string(res.Data) != tc.data {
					t.Errorf("data %q, want %q", res.Data, tc.data)
				}
			}
			mu.Lock()
			if got.Channel != "room:1" || string(got.Data) != `{"text":"darn"}` {
				t.Errorf("request %+v", got)
			}
			mu.Unlock()
			if calls(c, Publish, tc.out) != 1 {
				t.Errorf("outcome %s not counted", tc.out)
			}
		})
	}
}

func TestRPC(t *testing.T) {
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		var req RPCRequest
		json.NewDecoder(r.Body).Decode(&req)
		switch req.Procedure {
		case "chat.history":
			answer(`{"result":{"data":[{"text":"hi"}]}}`)(w, r)
		case "empty":
			answer(`{"result":{}}`)(w, r)
		default:
			answer(`{"error":{"name":"NoSuchThing","message":"unknown `+req.Procedure+`","code":7}}`)(w, r)
		}
	})
	c := newClient(t, testConfig(b.URL))
	res, err := c.RPC(ctx(t), &RPCRequest{SocketID: "s", Procedure: "chat.history", Data: json.RawMessage(`{"room":1}`)})
	if err != nil || string(res) != `[{"text":"hi"}]` {
		t.Fatalf("RPC = %s, %v", res, err)
	}
	res, err = c.RPC(ctx(t), &RPCRequest{SocketID: "s", Procedure: "empty"})
	if err != nil || string(res) != `null` {
		t.Fatalf("RPC without data = %s, %v", res, err)
	}
	_, err = c.RPC(ctx(t), &RPCRequest{SocketID: "s", Procedure: "typing"})
	want := protocol.NewError("NoSuchThing", "unknown typing", "code", json.Number("7"))
	if got := ClientError(err); !errors.Is(err, ErrRejected) || !reflect.DeepEqual(got, want) {
		t.Fatalf("RPC error = %+v (%v), want %+v", got, err, want)
	}
}

// TestBackendDown: nothing listens. Fail-closed refuses with
// ErrUnavailable after the retries of idempotent hooks; fail-open allows
// and counts it.
func TestBackendDown(t *testing.T) {
	url := deadURL(t)
	t.Run("fail-closed", func(t *testing.T) {
		c := newClient(t, testConfig(url))
		if err := c.Subscribe(ctx(t), &SubscribeRequest{Channel: "a"}); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("Subscribe: %v", err)
		}
		if _, err := c.Connect(ctx(t), &ConnectRequest{}); !errors.Is(err, ErrUnavailable) || CloseCode(err) != DefaultRejectCode {
			t.Fatalf("Connect: %v", err)
		}
		if _, err := c.Publish(ctx(t), &PublishRequest{}); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("Publish: %v", err)
		}
		_, err := c.RPC(ctx(t), &RPCRequest{})
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("RPC: %v", err)
		}
		if pe := ClientError(err); pe.Name != ErrNameBackend || strings.Contains(pe.Message, "127.0.0.1") {
			t.Errorf("client error %+v names internals", pe)
		}
		for k := Kind(0); k < numKinds; k++ {
			if calls(c, k, outError) != 1 {
				t.Errorf("%s: error count %v", k, calls(c, k, outError))
			}
		}
		for k, want := range map[Kind]float64{Connect: 2, Subscribe: 2, Publish: 0, RPC: 0} {
			if got := testutilCount(c.hooks[k].m.retries); got != want {
				t.Errorf("%s: %v retries, want %v", k, got, want)
			}
		}
	})
	t.Run("fail-open", func(t *testing.T) {
		cfg := testConfig(url)
		cfg.Connect.FailOpen = true
		cfg.Subscribe.FailOpen = true
		cfg.Publish.FailOpen = true
		c := newClient(t, cfg)
		if err := c.Subscribe(ctx(t), &SubscribeRequest{Channel: "a"}); err != nil {
			t.Fatalf("Subscribe: %v", err)
		}
		res, err := c.Connect(ctx(t), &ConnectRequest{})
		if err != nil || !res.FailedOpen || res.Claims != nil || res.Channels != nil {
			t.Fatalf("Connect = %+v, %v", res, err)
		}
		pr, err := c.Publish(ctx(t), &PublishRequest{Data: json.RawMessage(`1`)})
		if err != nil || !pr.FailedOpen || pr.Data != nil {
			t.Fatalf("Publish = %+v, %v", pr, err)
		}
		if _, err := c.RPC(ctx(t), &RPCRequest{}); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("RPC fails closed always: %v", err)
		}
		for _, k := range []Kind{Connect, Subscribe, Publish} {
			if got := testutilCount(c.hooks[k].m.failedOpen); got != 1 || calls(c, k, outError) != 1 {
				t.Errorf("%s: failed open %v, errors %v", k, got, calls(c, k, outError))
			}
		}
	})
}

// TestRetriesOnlyIdempotent counts the backend's hits: a 5xx is retried
// for connect and subscribe (1 + Retries hits), never for publish and
// rpc, and a 4xx never.
func TestRetriesOnlyIdempotent(t *testing.T) {
	b := newBackend(t, func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
	})
	c := newClient(t, testConfig(b.URL))
	try := func(k Kind) error {
		switch k {
		case Connect:
			_, err := c.Connect(ctx(t), &ConnectRequest{})
			return err
		case Subscribe:
			return c.Subscribe(ctx(t), &SubscribeRequest{})
		case Publish:
			_, err := c.Publish(ctx(t), &PublishRequest{})
			return err
		}
		_, err := c.RPC(ctx(t), &RPCRequest{})
		return err
	}
	for k, want := range map[Kind]int64{Connect: 3, Subscribe: 3, Publish: 1, RPC: 1} {
		before := b.hits.Load()
		if err := try(k); !errors.Is(err, ErrBadStatus) {
			t.Errorf("%s: %v, want ErrBadStatus", k, err)
		}
		if got := b.hits.Load() - before; got != want {
			t.Errorf("%s: backend hit %d times, want %d", k, got, want)
		}
		if calls(c, k, outBadStatus) != 1 {
			t.Errorf("%s: bad_status count %v", k, calls(c, k, outBadStatus))
		}
	}

	t.Run("recovers", func(t *testing.T) {
		var n atomic.Int64
		b := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
			if n.Add(1) == 1 {
				w.WriteHeader(http.StatusBadGateway)
				return
			}
			answer(`{"result":{}}`)(w, r)
		})
		c := newClient(t, testConfig(b.URL))
		if err := c.Subscribe(ctx(t), &SubscribeRequest{}); err != nil {
			t.Fatal(err)
		}
		if b.hits.Load() != 2 || calls(c, Subscribe, outAllow) != 1 {
			t.Errorf("hits %d, allow %v", b.hits.Load(), calls(c, Subscribe, outAllow))
		}
	})

	t.Run("4xx not retried", func(t *testing.T) {
		b := newBackend(t, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusForbidden) })
		c := newClient(t, testConfig(b.URL))
		if err := c.Subscribe(ctx(t), &SubscribeRequest{}); !errors.Is(err, ErrBadStatus) {
			t.Fatal(err)
		}
		if b.hits.Load() != 1 {
			t.Errorf("hits %d", b.hits.Load())
		}
	})
}

// TestConcurrencyBound: with Concurrency calls held by the backend, the
// next call fails at once as overloaded without reaching the backend.
func TestConcurrencyBound(t *testing.T) {
	const bound = 3
	release := make(chan struct{})
	var inHandler atomicInt
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		inHandler.add(1)
		<-release
		answer(`{"result":{}}`)(w, r)
	})
	cfg := testConfig(b.URL)
	cfg.Subscribe.Concurrency = bound
	cfg.Subscribe.Timeout = time.Minute
	cfg.Publish.Concurrency = 1
	cfg.Publish.FailOpen = true
	cfg.Publish.Timeout = time.Minute
	c := newClient(t, cfg)
	var wg sync.WaitGroup
	errs := make(chan error, bound+1)
	for range bound {
		wg.Go(func() { errs <- c.Subscribe(context.Background(), &SubscribeRequest{}) })
	}
	wg.Go(func() {
		_, err := c.Publish(context.Background(), &PublishRequest{})
		errs <- err
	})
	waitFor(t, "calls to reach the backend", func() bool { return inHandler.load() == bound+1 })
	if err := c.Subscribe(ctx(t), &SubscribeRequest{}); !errors.Is(err, ErrOverloaded) {
		t.Errorf("over the bound: %v, want ErrOverloaded", err)
	}
	if pe := ClientError(c.Subscribe(ctx(t), &SubscribeRequest{})); pe.Name != ErrNameBackend {
		t.Errorf("client error %+v", pe)
	}
	// A fail-open hook allows past its bound.
	pr, err := c.Publish(ctx(t), &PublishRequest{})
	if err != nil || !pr.FailedOpen {
		t.Errorf("fail-open publish over the bound = %+v, %v", pr, err)
	}
	if got := b.hits.Load(); got != bound+1 {
		t.Errorf("backend hit %d times, want %d", got, bound+1)
	}
	if calls(c, Subscribe, outOverloaded) != 2 || calls(c, Publish, outOverloaded) != 1 {
		t.Errorf("overloaded counts: subscribe %v, publish %v", calls(c, Subscribe, outOverloaded), calls(c, Publish, outOverloaded))
	}
	if v := testutilGauge(c.hooks[Subscribe].m.inFlight); v != bound {
		t.Errorf("in flight %v", v)
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("held call: %v", err)
		}
	}
	if err := c.Subscribe(ctx(t), &SubscribeRequest{}); err != nil {
		t.Errorf("after release: %v", err)
	}
}

// TestTimeout: a backend that never answers costs a call its timeout,
// after which the call fails (or, fail-open, allows) and no goroutine is
// left behind.
func TestTimeout(t *testing.T) {
	defer goleakVerify(t)
	release := make(chan struct{})
	b := newBackendNoCleanup(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer b.Close()
	defer close(release)
	cfg := testConfig(b.URL)
	cfg.Subscribe.Timeout = 50 * time.Millisecond
	cfg.RPC.Timeout = 50 * time.Millisecond
	cfg.Publish.Timeout = 50 * time.Millisecond
	cfg.Publish.FailOpen = true
	cfg.Registry = prometheus.NewRegistry()
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.Subscribe(ctx(t), &SubscribeRequest{})
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("Subscribe: %v, want ErrTimeout", err)
	}
	_, err = c.RPC(ctx(t), &RPCRequest{})
	if !errors.Is(err, ErrTimeout) || ClientError(err).Name != protocol.ErrNameTimeout {
		t.Fatalf("RPC: %v, want ErrTimeout", err)
	}
	if pr, err := c.Publish(ctx(t), &PublishRequest{}); err != nil || !pr.FailedOpen {
		t.Fatalf("fail-open Publish = %+v, %v", pr, err)
	}
	for _, k := range []Kind{Subscribe, RPC, Publish} {
		if calls(c, k, outTimeout) != 1 {
			t.Errorf("%s: timeout count %v", k, calls(c, k, outTimeout))
		}
	}
}

// TestCanceled: a caller that gives up (its socket closed) is counted as
// canceled, and fail-open does not turn that into an allow.
func TestCanceled(t *testing.T) {
	release := make(chan struct{})
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	cfg := testConfig(b.URL)
	cfg.Subscribe.FailOpen = true
	cfg.Subscribe.Timeout = time.Minute
	c := newClient(t, cfg)
	cctx, cancel := context.WithCancel(ctx(t))
	go func() {
		waitFor(t, "the call to reach the backend", func() bool { return b.hits.Load() == 1 })
		cancel()
	}()
	err := c.Subscribe(cctx, &SubscribeRequest{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Subscribe: %v, want context.Canceled", err)
	}
	if calls(c, Subscribe, outCanceled) != 1 || testutilCount(c.hooks[Subscribe].m.failedOpen) != 0 {
		t.Errorf("canceled %v, failed open %v", calls(c, Subscribe, outCanceled), testutilCount(c.hooks[Subscribe].m.failedOpen))
	}
}

// TestHostileAnswers: every answer that is not the documented JSON is a
// bad response (or bad status), never an allow, and never a crash.
func TestHostileAnswers(t *testing.T) {
	const max = 1 << 10
	okBody := `{"result":{}}`
	cases := []struct {
		name string
		h    http.HandlerFunc
		out  outcome
	}{
		{"garbage", answer(`<<<garbage>>>`), outBadResponse},
		{"html", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.Write([]byte(okBody))
		}, outBadResponse},
		{"bad content type", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", ";;;")
			w.Write([]byte(okBody))
		}, outBadResponse},
		{"empty", answer(``), outBadResponse},
		{"empty object", answer(`{}`), outBadResponse},
		{"null result", answer(`{"result":null}`), outBadResponse},
		{"null error, no result", answer(`{"error":null}`), outBadResponse},
		{"array", answer(`[{"result":{}}]`), outBadResponse},
		{"string", answer(`"allow"`), outBadResponse},
		{"result not an object", answer(`{"result":true}`), outBadResponse},
		{"trailing garbage", answer(okBody + `{"result":{}}`), outBadResponse},
		{"truncated", answer(`{"result":{`), outBadResponse},
		{"deep nesting", answer(`{"result":` + strings.Repeat("[", 600) + strings.Repeat("]", 600) + `}`), outBadResponse},
		{"one byte over the bound", answer(okBody + strings.Repeat(" ", max-len(okBody)+1)), outBadResponse},
		{"declared too large", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Length", "1000000000")
			w.Write([]byte(okBody))
		}, outBadResponse},
		{"not found", func(w http.ResponseWriter, _ *http.Request) { http.NotFound(w, nil) }, outBadStatus},
		{"no content", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }, outBadStatus},
		{"huge header", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("X-Junk", strings.Repeat("j", 4*max))
			answer(okBody)(w, nil)
		}, outError},
		{"hang up", func(w http.ResponseWriter, _ *http.Request) {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				conn.Close()
			}
		}, outError},
		// Controls: exactly at the bound, and a JSON content type with
		// parameters or a +json suffix, are fine.
		{"exactly the bound", answer(okBody + strings.Repeat(" ", max-len(okBody))), outAllow},
		{"charset", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			w.Write([]byte(okBody))
		}, outAllow},
		{"no content type", func(w http.ResponseWriter, _ *http.Request) {
			w.Header()["Content-Type"] = nil
			w.Write([]byte(okBody))
		}, outAllow},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := newBackend(t, tc.h)
			cfg := testConfig(b.URL)
			cfg.MaxResponseBytes = max
			cfg.Subscribe.Retries = 0
			c := newClient(t, cfg)
			err := c.Subscribe(ctx(t), &SubscribeRequest{})
			if tc.out == outAllow {
				if err != nil {
					t.Fatalf("Subscribe: %v", err)
				}
			} else if err == nil || errors.Is(err, ErrRejected) {
				t.Fatalf("Subscribe: %v, want a failure", err)
			}
			if calls(c, Subscribe, tc.out) != 1 {
				t.Errorf("outcome %s not counted (err %v)", tc.out, err)
			}
		})
	}
}

// TestRedirectNotFollowed: a 3xx is a bad status; the key never reaches
// the redirect's target.
func TestRedirectNotFollowed(t *testing.T) {
	target := newBackend(t, answer(`{"result":{}}`))
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL, http.StatusTemporaryRedirect)
	})
	cfg := testConfig(b.URL)
	cfg.Key = "k"
	c := newClient(t, cfg)
	if err := c.Subscribe(ctx(t), &SubscribeRequest{}); !errors.Is(err, ErrBadStatus) {
		t.Fatalf("Subscribe: %v", err)
	}
	if target.hits.Load() != 0 {
		t.Errorf("redirect followed")
	}
}

// TestHugeBodyBoundedMemory: a backend streaming 100 MiB costs the client
// its response bound, not the body.
func TestHugeBodyBoundedMemory(t *testing.T) {
	const total = 100 << 20
	for _, declared := range []bool{false, true} {
		t.Run(map[bool]string{false: "chunked", true: "content-length"}[declared], func(t *testing.T) {
			var written atomicInt
			chunk := []byte(strings.Repeat("a", 64<<10))
			b := newBackend(t, func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				if declared {
					w.Header().Set("Content-Length", "104857600")
				}
				if _, err := w.Write([]byte(`{"result":{"data":"`)); err != nil {
					return
				}
				for written.load() < total {
					n, err := w.Write(chunk)
					written.add(int64(n))
					if err != nil {
						return
					}
				}
			})
			c := newClient(t, testConfig(b.URL))
			var before, after runtimeMem
			before.read()
			_, err := c.Publish(ctx(t), &PublishRequest{})
			after.read()
			if !errors.Is(err, ErrBadResponse) {
				t.Fatalf("Publish: %v, want ErrBadResponse", err)
			}
			if grew := after.total - before.total; grew > 8<<20 {
				t.Errorf("allocated %d bytes reading a 100 MiB answer", grew)
			}
			if calls(c, Publish, outBadResponse) != 1 {
				t.Errorf("bad_response not counted")
			}
		})
	}
}

func TestMetricsOnRegistry(t *testing.T) {
	b := newBackend(t, answer(`{"result":{}}`))
	reg := prometheus.NewRegistry()
	cfg := testConfig(b.URL)
	cfg.Registry = reg
	c := newClient(t, cfg)
	if err := c.Subscribe(ctx(t), &SubscribeRequest{}); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	for _, n := range []string{"scc_frontend_hook_calls_total", "scc_frontend_hook_duration_seconds", "scc_frontend_hook_retries_total", "scc_frontend_hook_failed_open_total", "scc_frontend_hook_in_flight"} {
		if !names[n] {
			t.Errorf("%s not on the registry", n)
		}
	}
	if _, err := New(cfg); err == nil {
		t.Error("a second Client on the same registry registered twice")
	}
}

// TestCallerDeadline: a caller's own deadline, shorter than the hook's
// timeout, ends the call as a timeout.
func TestCallerDeadline(t *testing.T) {
	release := make(chan struct{})
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	cfg := testConfig(b.URL)
	cfg.RPC.Timeout = time.Minute
	c := newClient(t, cfg)
	dctx, cancel := context.WithTimeout(ctx(t), 50*time.Millisecond)
	defer cancel()
	if _, err := c.RPC(dctx, &RPCRequest{}); !errors.Is(err, ErrTimeout) {
		t.Fatalf("RPC: %v, want ErrTimeout", err)
	}
	if calls(c, RPC, outTimeout) != 1 {
		t.Errorf("timeout not counted")
	}
}
