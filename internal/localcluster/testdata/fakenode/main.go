// Command fakenode stands in for scc-state, scc-broker and scc-frontend in
// the supervisor's tests: it reads the same port variables, serves /readyz,
// prints to stdout and stderr and obeys SIGTERM. Its role is its file name.
//
// Test knobs (environment): FAKE_READY_AFTER (duration before /readyz
// answers 200), FAKE_IGNORE_TERM=1 (ignore SIGTERM), FAKE_CRASH_ROLE=<role>
// (exit 2 at once). GET /env returns the environment, GET /crash exits 3.
package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

func main() {
	role := strings.TrimPrefix(filepath.Base(os.Args[0]), "scc-")
	var host, port string
	switch role {
	case "state":
		host, port = os.Getenv("SCC_STATE_SERVER_HOST"), os.Getenv("SCC_STATE_SERVER_PORT")
	case "broker":
		host, port = os.Getenv("SCC_BROKER_HOST"), os.Getenv("SCC_BROKER_SERVER_PORT")
	case "frontend":
		host, port = os.Getenv("SCC_FRONTEND_HOST"), os.Getenv("SOCKETCLUSTER_PORT")
	default:
		fmt.Fprintln(os.Stderr, "unknown role", role)
		os.Exit(1)
	}
	if os.Getenv("FAKE_CRASH_ROLE") == role {
		fmt.Fprintln(os.Stderr, "crashing on purpose")
		os.Exit(2)
	}
	readyAfter, _ := time.ParseDuration(os.Getenv("FAKE_READY_AFTER"))
	start := time.Now()

	sigs := make(chan os.Signal, 1)
	if os.Getenv("FAKE_IGNORE_TERM") == "1" {
		signal.Ignore(syscall.SIGTERM)
	} else {
		signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	}

	ln, err := net.Listen("tcp", net.JoinHostPort(host, port))
	if err != nil {
		fmt.Fprintln(os.Stderr, "listen:", err)
		os.Exit(1)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if time.Since(start) < readyAfter {
			http.Error(w, "not yet", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/env", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(os.Environ())
	})
	mux.HandleFunc("/crash", func(w http.ResponseWriter, r *http.Request) {
		fmt.Println("crash requested")
		os.Exit(3)
	})
	go http.Serve(ln, mux)

	fmt.Printf("fake %s listening on %s\n", role, ln.Addr())
	fmt.Fprintf(os.Stderr, "fake %s pid %d\n", role, os.Getpid())
	os.Stdout.WriteString("partial ")
	os.Stdout.WriteString("line\n")
	<-sigs
	fmt.Println("got SIGTERM")
	os.Stdout.WriteString("tail without newline")
	os.Exit(0)
}
