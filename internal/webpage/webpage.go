// Package webpage builds and serves sccgo's small self-contained HTML
// pages (the state server's status page, the frontend's demo): the style
// and script are inlined into the document, and a Content-Security-Policy
// admits exactly them by hash, so a page needs no external asset.
package webpage

import (
	"crypto/sha256"
	"encoding/base64"
	"io/fs"
	"net/http"
	"strings"
)

// Page is one assembled document and its policy.
type Page struct {
	body []byte
	csp  string
}

// Build reads page.html, page.css and page.js from files, replaces the
// /*STYLE*/ and /*SCRIPT*/ placeholders with the style and script, and
// derives the policy; connectSrc is the CSP connect-src list (for example
// "'self'"). It panics if a file is missing: the files are embedded.
func Build(files fs.FS, connectSrc string) Page {
	read := func(name string) string {
		b, err := fs.ReadFile(files, name)
		if err != nil {
			panic("webpage: " + err.Error())
		}
		return string(b)
	}
	css, js := read("page.css"), read("page.js")
	html := strings.NewReplacer("/*STYLE*/", css, "/*SCRIPT*/", js).Replace(read("page.html"))
	policy := "default-src 'none'; script-src " + hash(js) + "; style-src " + hash(css) +
		"; connect-src " + connectSrc + "; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
	return Page{body: []byte(html), csp: policy}
}

func hash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}

// Serve writes the page for GET and HEAD, and 405 for other methods.
func (p Page) Serve(w http.ResponseWriter, r *http.Request) {
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
	h.Set("Content-Security-Policy", p.csp)
	w.Write(p.body)
}
