package statuspage

import (
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"net/http"
	"strings"
)

//go:embed page.html page.css page.js
var files embed.FS

// page is the assembled document and its Content-Security-Policy.
var page, csp = build()

// build inlines the style and script into the HTML and derives a CSP that
// admits exactly them.
func build() ([]byte, string) {
	read := func(name string) string {
		b, err := files.ReadFile(name)
		if err != nil {
			panic("statuspage: " + err.Error()) // embedded: cannot happen
		}
		return string(b)
	}
	css, js := read("page.css"), read("page.js")
	html := strings.NewReplacer("/*STYLE*/", css, "/*SCRIPT*/", js).Replace(read("page.html"))
	policy := "default-src 'none'; script-src " + hash(js) + "; style-src " + hash(css) +
		"; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
	return []byte(html), policy
}

func hash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}

// Handler serves the status page at "/" (and "/index.html"); any other
// path is 404. The state server mounts it at "/", beside /status.
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "", "/", "/index.html":
		default:
			http.NotFound(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Content-Security-Policy", csp)
		w.Write(page)
	})
}
