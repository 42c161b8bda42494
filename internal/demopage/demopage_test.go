package demopage

import (
	"crypto/sha256"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
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
	for _, path := range []string{"/demo/", "/demo/index.html", "/"} {
		resp := get(t, h, "GET", path)
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s = %d", path, resp.StatusCode)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
			t.Errorf("Content-Type = %q", ct)
		}
		for _, id := range []string{`id="status"`, `id="messages"`, `id="input"`, `id="send"`, `id="frontend"`, `id="room"`} {
			if !strings.Contains(string(body), id) {
				t.Errorf("page lacks %s", id)
			}
		}
		if regexp.MustCompile(`(?i)<(script|link)[^>]+(src|href)=`).Match(body) {
			t.Error("page loads an external asset")
		}
	}
	resp := get(t, h, "GET", "/demo?url=ws://x/")
	if resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != "/demo/?url=ws://x/" {
		t.Errorf("GET /demo = %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp := get(t, h, "GET", "/demo/app.js"); resp.StatusCode != 404 {
		t.Errorf("GET /demo/app.js = %d, want 404", resp.StatusCode)
	}
	if resp := get(t, h, "POST", "/demo/"); resp.StatusCode != 405 {
		t.Errorf("POST /demo/ = %d, want 405", resp.StatusCode)
	}
}

func inline(t *testing.T, page, tag string) string {
	t.Helper()
	m := regexp.MustCompile(`(?s)<`+tag+`>(.*?)</`+tag+`>`).FindAllStringSubmatch(page, -1)
	if len(m) != 1 {
		t.Fatalf("%d <%s> elements, want 1", len(m), tag)
	}
	return m[0][1]
}

func TestCSPAdmitsExactlyTheInlineScriptAndStyle(t *testing.T) {
	resp := get(t, Handler(), "GET", "/demo/")
	body, _ := io.ReadAll(resp.Body)
	policy := resp.Header.Get("Content-Security-Policy")
	for _, want := range []string{
		"default-src 'none'",
		"script-src " + hash(inline(t, string(body), "script")),
		"style-src " + hash(inline(t, string(body), "style")),
		"connect-src 'self' ws: wss:",
	} {
		if !strings.Contains(policy, want) {
			t.Errorf("CSP %q lacks %q", policy, want)
		}
	}
}

// scriptFile writes the page's inline script to a file for node.
func scriptFile(t *testing.T) (node, path string) {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("node is required in CI to run the page script")
		}
		t.Skip("node not installed; skipping the page script test")
	}
	body, _ := io.ReadAll(get(t, Handler(), "GET", "/demo/").Body)
	path = filepath.Join(t.TempDir(), "page.js")
	if err := os.WriteFile(path, []byte(inline(t, string(body), "script")), 0o644); err != nil {
		t.Fatal(err)
	}
	return node, path
}

func TestScriptSpeaksSocketCluster(t *testing.T) {
	node, script := scriptFile(t)
	for _, tc := range []struct{ search, url string }{
		{"", "ws://127.0.0.1:8000/socketcluster/"},
		{"?url=ws://127.0.0.1:8001/socketcluster/&room=r1&name=ann", "ws://127.0.0.1:8001/socketcluster/"},
		{"?url=javascript:alert(1)", "ws://127.0.0.1:8000/socketcluster/"},
	} {
		out, err := exec.Command(node, "testdata/drive.js", script, tc.search, tc.url).CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "ok" {
			t.Errorf("search %q: %v\n%s", tc.search, err, out)
		}
	}
}

// hash is the CSP source expression of an inline script or style,
// computed here independently of the code under test.
func hash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}
