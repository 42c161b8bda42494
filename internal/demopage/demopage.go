package demopage

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
// admits exactly them. connect-src allows any ws:/wss: URL because ?url=
// may point at another frontend.
func build() ([]byte, string) {
	read := func(name string) string {
		b, err := files.ReadFile(name)
		if err != nil {
			panic("demopage: " + err.Error()) // embedded: cannot happen
		}
		return string(b)
	}
	css, js := read("page.css"), read("page.js")
	html := strings.NewReplacer("/*STYLE*/", css, "/*SCRIPT*/", js).Replace(read("page.html"))
	policy := "default-src 'none'; script-src " + hash(js) + "; style-src " + hash(css) +
		"; connect-src 'self' ws: wss:; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
	return []byte(html), policy
}

func hash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}

// Handler serves the demo page. The frontend mounts it at "/demo/"; it
// answers "/demo/", "/demo/index.html" and, when mounted with
// http.StripPrefix, "/" and "/index.html". "/demo" redirects to "/demo/".
// Anything else is 404.
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/demo/", "/demo/index.html", "/", "/index.html", "":
		case "/demo":
			target := "/demo/"
			if r.URL.RawQuery != "" {
				target += "?" + r.URL.RawQuery
			}
			http.Redirect(w, r, target, http.StatusMovedPermanently)
			return
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
