package statuspage

import (
	"embed"
	"net/http"

	"github.com/sccgo/sccgo/internal/webpage"
)

//go:embed page.html page.css page.js
var files embed.FS

// page is the assembled document and its Content-Security-Policy.
var page = webpage.Build(files, "'self'")

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
		page.Serve(w, r)
	})
}
