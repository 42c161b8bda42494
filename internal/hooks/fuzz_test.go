package hooks

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// FuzzAnswer feeds any answer (status, content type, body) to every hook
// through a transport that needs no socket: a call never panics, never
// allows on an answer that is not a result, and a denial always carries
// an error object (and, for connect, a valid close code).
func FuzzAnswer(f *testing.F) {
	for _, s := range []string{
		`{"result":{}}`,
		`{"result":{"data":{"x":1}}}`,
		`{"result":{"data":null}}`,
		`{"result":{"claims":{"sub":"42"},"token":"a.b.c","channels":["user:42"]}}`,
		`{"result":{"claims":[1]}}`,
		`{"result":{"channels":"user:42"}}`,
		`{"error":{"name":"SubscribeBlockedError","message":"no"}}`,
		`{"error":{"message":"banned"},"code":4403}`,
		`{"error":"string","code":"x"}`,
		`{"error":42,"result":{}}`,
		`{"error":null}`,
		`{"result":null}`,
		`{}`, `[]`, `null`, `"allow"`, ``, `{"result":{}} junk`, `{"result":{"data":"\ud800"}}`,
	} {
		f.Add(200, "application/json", s)
	}
	f.Add(503, "application/json", `{"result":{}}`)
	f.Add(200, "text/html", `{"result":{}}`)
	f.Add(200, "", `{"result":{}}`)
	f.Fuzz(func(t *testing.T, status int, ctype, body string) {
		if status < 100 || status > 999 {
			status = 200
		}
		cfg := testConfig("http://backend.invalid/hook")
		cfg.Connect.Retries, cfg.Subscribe.Retries = 0, 0
		cfg.Registry = prometheus.NewRegistry()
		c, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range c.hooks {
			h.http.Transport = roundTripFunc(func(r *http.Request) (*http.Response, error) {
				hdr := http.Header{}
				if ctype != "" {
					hdr.Set("Content-Type", ctype)
				}
				return &http.Response{StatusCode: status, Header: hdr, Body: io.NopCloser(strings.NewReader(body)),
					ContentLength: -1, Request: r}, nil
			})
		}
		ctx := context.Background()
		answered := status == 200 && strings.Contains(body, "result")
		check := func(k Kind, err error) {
			var r *Rejection
			switch {
			case err == nil:
				if !answered {
					t.Fatalf("%s allowed on status %d body %q", k, status, body)
				}
			case errors.As(err, &r):
				if r.Err == nil || ClientError(err) == nil {
					t.Fatalf("%s: rejection without an error object", k)
				}
				if k == Connect && !validCloseCode(r.Code) {
					t.Fatalf("connect rejection with code %d", r.Code)
				}
			default:
				if pe := ClientError(err); pe == nil || pe.Name == "" {
					t.Fatalf("%s: failure %v gives no client error", k, err)
				}
			}
		}
		_, err = c.Connect(ctx, &ConnectRequest{SocketID: "s"})
		check(Connect, err)
		check(Subscribe, c.Subscribe(ctx, &SubscribeRequest{Channel: "c"}))
		_, err = c.Publish(ctx, &PublishRequest{Channel: "c"})
		check(Publish, err)
		_, err = c.RPC(ctx, &RPCRequest{Procedure: "p"})
		check(RPC, err)
	})
}
