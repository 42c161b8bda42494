package demopage

import (
	"embed"
	"net/http"

	"github.com/sccgo/sccgo/internal/webpage"
)

//go:embed page.html page.css page.js
var files embed.FS

// page is the assembled document and its Content-Security-Policy.
// connect-src allows any ws:/wss: URL because ?url= may point at another
// frontend.
var page = webpage.Build(files, "'self' ws: wss:")

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
		page.Serve(w, r)
	})
}
