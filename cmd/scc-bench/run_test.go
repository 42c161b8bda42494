package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sccgo/sccgo/bench"
	"github.com/sccgo/sccgo/frontend"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func testEnv(stdout, stderr *bytes.Buffer) env {
	return env{getenv: func(string) string { return "" }, stdin: strings.NewReader(""), stdout: stdout, stderr: stderr}
}

func startFrontend(t *testing.T) string {
	t.Helper()
	srv, err := frontend.New(frontend.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-errc
	})
	<-srv.Ready()
	return "ws://" + srv.Addr().String() + "/socketcluster/"
}

func TestHelp(t *testing.T) {
	var out, errb bytes.Buffer
	err := run(context.Background(), []string{"-h"}, testEnv(&out, &errb))
	if !errors.Is(err, flag.ErrHelp) || !strings.Contains(errb.String(), "-subs") || !strings.Contains(errb.String(), "SCC_BENCH_URLS") {
		t.Fatalf("err %v, usage:\n%s", err, errb.String())
	}
}

func TestBadArguments(t *testing.T) {
	for _, args := range [][]string{
		{"nope"},
		{"fanout", "-duration", "x"},
		{"fanout", "-src-ips", "1.2.3.4-1.2.3.1"},
		{"fanout", "extra"},
	} {
		var out, errb bytes.Buffer
		if err := run(context.Background(), args, testEnv(&out, &errb)); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}

func TestRunFanoutWritesReports(t *testing.T) {
	url := startFrontend(t)
	dir := t.TempDir()
	var out, errb bytes.Buffer
	args := []string{"fanout", "-urls", url, "-subs", "10", "-channels", "2", "-pubs", "2", "-rate", "100",
		"-warmup", "100ms", "-duration", "500", "-drain", "2s",
		"-json", filepath.Join(dir, "r.json"), "-report", filepath.Join(dir, "r.html")}
	if err := run(context.Background(), args, testEnv(&out, &errb)); err != nil {
		t.Fatalf("run: %v\n%s%s", err, out.String(), errb.String())
	}
	if !strings.Contains(out.String(), "result: PASS") {
		t.Fatalf("report:\n%s", out.String())
	}
	page, err := os.ReadFile(filepath.Join(dir, "r.html"))
	if err != nil || !bytes.Contains(page, []byte("<svg")) {
		t.Fatalf("html: %v", err)
	}

	// summary and html work from the JSON.
	out.Reset()
	md := filepath.Join(dir, "summary.md")
	if err := run(context.Background(), []string{"summary", "-title", "# t", "-o", md, filepath.Join(dir, "r.json")}, testEnv(&out, &errb)); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(md)
	if !strings.Contains(string(b), "| fanout |") {
		t.Fatalf("summary:\n%s", b)
	}
	if err := run(context.Background(), []string{"html", filepath.Join(dir, "r.json"), filepath.Join(dir, "again.html")}, testEnv(&out, &errb)); err != nil {
		t.Fatal(err)
	}
}

func TestRunJSONToStdout(t *testing.T) {
	url := startFrontend(t)
	var out, errb bytes.Buffer
	args := []string{"conns", "-quiet", "-urls", url, "-subs", "5", "-duration", "100ms", "-json", "-"}
	if err := run(context.Background(), args, testEnv(&out, &errb)); err != nil {
		t.Fatalf("run: %v\n%s", err, errb.String())
	}
	r, err := bench.ReadJSON(&out)
	if err != nil || r.Connect.Connected != 5 {
		t.Fatalf("stdout is not the JSON result: %v %+v", err, r)
	}
	if !strings.Contains(errb.String(), "result: PASS") {
		t.Fatalf("text report should go to stderr:\n%s", errb.String())
	}
}

func TestRunUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	var out, errb bytes.Buffer
	err = run(context.Background(), []string{"-urls", "ws://" + addr + "/socketcluster/"}, testEnv(&out, &errb))
	if !errors.Is(err, bench.ErrUnreachable) {
		t.Fatalf("got %v", err)
	}
}
