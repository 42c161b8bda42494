package statuspage

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, method, path string) *http.Response {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	return rec.Result()
}

func TestHandlerServesPage(t *testing.T) {
	h := Handler()
	for _, path := range []string{"/", "/index.html"} {
		resp := get(t, h, "GET", path)
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s = %d", path, resp.StatusCode)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
			t.Errorf("Content-Type = %q", ct)
		}
		for _, id := range []string{`id="members"`, `id="ring-version"`, `id="ring-brokers"`, `id="reshard"`, `id="error"`} {
			if !strings.Contains(string(body), id) {
				t.Errorf("page lacks %s", id)
			}
		}
		if strings.Contains(string(body), "/*SCRIPT*/") || strings.Contains(string(body), "/*STYLE*/") {
			t.Error("placeholders left in the page")
		}
		if regexp.MustCompile(`(?i)<(script|link)[^>]+(src|href)=`).Match(body) {
			t.Error("page loads an external asset")
		}
	}
	if resp := get(t, h, "GET", "/favicon.ico"); resp.StatusCode != 404 {
		t.Errorf("GET /favicon.ico = %d, want 404", resp.StatusCode)
	}
	if resp := get(t, h, "POST", "/"); resp.StatusCode != 405 {
		t.Errorf("POST / = %d, want 405", resp.StatusCode)
	}
	if resp := get(t, h, "HEAD", "/"); resp.StatusCode != 200 {
		t.Errorf("HEAD / = %d", resp.StatusCode)
	}
}

// inline returns the contents of the page's only <tag> element.
func inline(t *testing.T, page, tag string) string {
	t.Helper()
	m := regexp.MustCompile(`(?s)<`+tag+`>(.*?)</`+tag+`>`).FindAllStringSubmatch(page, -1)
	if len(m) != 1 {
		t.Fatalf("%d <%s> elements, want 1", len(m), tag)
	}
	return m[0][1]
}

func TestCSPAdmitsExactlyTheInlineScriptAndStyle(t *testing.T) {
	resp := get(t, Handler(), "GET", "/")
	body, _ := io.ReadAll(resp.Body)
	policy := resp.Header.Get("Content-Security-Policy")
	for _, want := range []string{
		"default-src 'none'",
		"script-src " + hash(inline(t, string(body), "script")),
		"style-src " + hash(inline(t, string(body), "style")),
		"connect-src 'self'",
	} {
		if !strings.Contains(policy, want) {
			t.Errorf("CSP %q lacks %q", policy, want)
		}
	}
}

// render runs the page script in node against one /status body.
func render(t *testing.T, status string) map[string]any {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("node is required in CI to run the page script")
		}
		t.Skip("node not installed; skipping the page script test")
	}
	body, _ := io.ReadAll(get(t, Handler(), "GET", "/").Body)
	dir := t.TempDir()
	script := filepath.Join(dir, "page.js")
	statusFile := filepath.Join(dir, "status.json")
	os.WriteFile(script, []byte(inline(t, string(body), "script")), 0o644)
	os.WriteFile(statusFile, []byte(status), 0o644)
	out, err := exec.Command(node, "testdata/render.js", script, statusFile).CombinedOutput()
	if err != nil {
		t.Fatalf("node: %v\n%s", err, out)
	}
	var got map[string]any
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("render output %q: %v", out, err)
	}
	return got
}

func rows(got map[string]any) [][]string {
	var out [][]string
	for _, r := range got["members"].([]any) {
		var cells []string
		for _, c := range r.([]any) {
			cells = append(cells, c.(string))
		}
		out = append(out, cells)
	}
	return out
}

// testdata/status.json has the shape of the state server's /status
// (state.Status): snake_case keys, protocol.BrokerInfo as {"ID","Addr"}.
func TestScriptRendersStatus(t *testing.T) {
	status, err := os.ReadFile("testdata/status.json")
	if err != nil {
		t.Fatal(err)
	}
	got := render(t, string(status))
	if got["ringVersion"] != "3" || got["ringCount"] != "2" {
		t.Errorf("ring = %v / %v", got["ringVersion"], got["ringCount"])
	}
	if b := got["ringBrokers"].([]any); len(b) != 2 || b[0] != "broker-1 @ 127.0.0.1:8888" {
		t.Errorf("ring brokers = %v", b)
	}
	r := rows(got)
	ids := []string{}
	for _, row := range r {
		ids = append(ids, row[1])
	}
	if !slices.Equal(ids, []string{"broker-1", "broker-2", "broker-3", "frontend-1"}) {
		t.Fatalf("member rows not sorted by role then id: %v", ids)
	}
	// columns: role id addr health in-ring draining conns subs in out ring rules
	want := [][]string{
		{"broker", "broker-1", "127.0.0.1:8888", "healthy", "yes", "no", "–", "–", "–", "–", "3", "aaaaaaaaaaaa"},
		{"broker", "broker-2", "127.0.0.1:8889", "gossip: dead", "yes", "leaving", "–", "–", "–", "–", "3", "aaaaaaaaaaaa"},
		{"broker", "broker-3", "127.0.0.1:8890", "disconnected", "no", "no", "–", "–", "–", "–", "2", "–"},
		{"frontend", "frontend-1", "–", "healthy", "no", "no", "1,200", "7", "10", "20", "3", "bbbbbbbbbbbb (differs)"},
	}
	for i := range want {
		if !slices.Equal(r[i], want[i]) {
			t.Errorf("row %d = %q\n      want %q", i, r[i], want[i])
		}
	}
	rs := got["reshard"].(string)
	for _, s := range []string{"prepare", "1 / 2", "broker-1", "ago"} {
		if !strings.Contains(rs, s) {
			t.Errorf("reshard %q lacks %q", rs, s)
		}
	}
	if got["stateNode"] != "scc-state" || got["maxVersion"] != "4" || got["startup"] != "done" {
		t.Errorf("state card: %v %v %v", got["stateNode"], got["maxVersion"], got["startup"])
	}
	if got["rules"] != "MISMATCH: 2 digests" || got["rulesClass"] != "bad" {
		t.Errorf("channel rules: %v (%v)", got["rules"], got["rulesClass"])
	}
	if got["totalConnections"] != "1,200" || got["rescheduled"] != true || got["error"] != "" {
		t.Errorf("totals/poll: %v", got)
	}
}

func TestScriptToleratesOtherShapes(t *testing.T) {
	// snake_case, members keyed by id, unknown fields, nothing else.
	got := render(t, `{"members": {"broker-1": {"role": "broker", "link_up": true, "last_stats": {"messages_in": 5}, "extra": [1]}},
	                   "ring": {"version": 1, "brokers": ["broker-1"]}, "surprise": {"x": 1}}`)
	r := rows(got)
	if len(r) != 1 || r[0][1] != "broker-1" || r[0][3] != "healthy" || r[0][8] != "5" || r[0][2] != "–" {
		t.Fatalf("rows = %v", r)
	}
	if got["reshard"] != "none in progress" {
		t.Errorf("reshard = %v", got["reshard"])
	}
	// Empty object: every field missing.
	got = render(t, `{}`)
	if got["ringVersion"] != "–" || !slices.Equal(rows(got)[0], []string{"no members reported"}) {
		t.Errorf("empty status: %v", got)
	}
	// Unreachable state server.
	got = render(t, `FAIL`)
	if !strings.Contains(got["error"].(string), "connection refused") || got["rescheduled"] != true {
		t.Errorf("fetch failure: %v", got)
	}
}

// hash is the CSP source expression of an inline script or style,
// computed here independently of the code under test.
func hash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}

// One rules digest among the members: the page says the rules agree.
func TestScriptShowsAgreeingRules(t *testing.T) {
	got := render(t, `{"node": "s", "rules_mismatch": false, "rules_digest": "abcdef0123456789",
		"rules_digests": {"abcdef0123456789": 2},
		"members": [{"id": "f1", "role": "frontend", "connected": true, "rules_digest": "abcdef0123456789"}]}`)
	if got["rules"] != "same on all nodes (abcdef012345)" || got["rulesClass"] != "ok" {
		t.Fatalf("channel rules: %v (%v)", got["rules"], got["rulesClass"])
	}
	if r := rows(got); len(r) != 1 || r[0][11] != "abcdef012345" {
		t.Fatalf("rows %q", r)
	}
}
