package adminport

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/sccgo/sccgo/internal/config"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestStartServesAndShutsDown(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "m 1\n") })
	s, err := Start("127.0.0.1", freePort(t), mux, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get("http://" + s.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "m 1\n" {
		t.Fatalf("GET /metrics = %d %q", resp.StatusCode, body)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown = %v", err)
	}
}

// Port 0 opens no listener, and the nil Server's methods do nothing.
func TestPortZeroOpensNothing(t *testing.T) {
	s, err := Start("127.0.0.1", 0, http.NotFoundHandler(), Limits{})
	if err != nil || s != nil || s.Addr() != nil || s.Shutdown(context.Background()) != nil {
		t.Fatalf("Start with port 0 = %v, %v", s, err)
	}
}

func TestRead(t *testing.T) {
	env := map[string]string{}
	get := func(k string) string { return env[k] }
	if s := Read(config.NewReader(get), DefaultBrokerPort, "SCC_BROKER_HOST", "/metrics"); s != (Settings{Port: 8889}) {
		t.Fatalf("defaults %+v", s)
	}
	env = map[string]string{"SCC_ADMIN_PORT": "0", "SCC_ADMIN_HOST": "127.0.0.1", "SCC_ADMIN_ON_CLIENT_PORT": "yes"}
	if s := Read(config.NewReader(get), DefaultBrokerPort, "SCC_BROKER_HOST", "/metrics"); s != (Settings{Host: "127.0.0.1", OnClientPort: true}) {
		t.Fatalf("set %+v", s)
	}
	r := config.NewReader(func(k string) string { return map[string]string{"SCC_ADMIN_PORT": "70000"}[k] })
	Read(r, DefaultStatePort, "SCC_STATE_SERVER_HOST", "/metrics")
	if r.Err() == nil {
		t.Fatal("port 70000 accepted")
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func TestPprofOnlyWhenAsked(t *testing.T) {
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte("metrics"))
	})
	get := func(h http.Handler, path string) (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec.Code, rec.Body.String()
	}
	off := Read(config.NewReader(func(string) string { return "" }), DefaultBrokerPort, "SCC_BROKER_HOST", "/metrics")
	if code, _ := get(off.Handler(inner), "/debug/pprof/goroutine?debug=1"); code != http.StatusNotFound {
		t.Fatalf("profiles served without SCC_ADMIN_PPROF: %d", code)
	}
	on := Read(config.NewReader(func(k string) string { return map[string]string{"SCC_ADMIN_PPROF": "true"}[k] }), DefaultBrokerPort, "SCC_BROKER_HOST", "/metrics")
	if !on.Pprof {
		t.Fatal("SCC_ADMIN_PPROF not read")
	}
	h := on.Handler(inner)
	if code, body := get(h, "/debug/pprof/goroutine?debug=1"); code != http.StatusOK || !strings.Contains(body, "goroutine") {
		t.Fatalf("goroutine profile: %d %.80q", code, body)
	}
	if code, body := get(h, "/metrics"); code != http.StatusOK || body != "metrics" {
		t.Fatalf("the admin pages behind the profiles: %d %q", code, body)
	}
}
