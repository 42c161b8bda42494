package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/sccgo/sccgo/internal/config"
	"github.com/sccgo/sccgo/internal/localcluster"
)

// envFlag collects repeated -env KEY=VALUE flags.
type envFlag map[string]string

func (e envFlag) String() string { return "" }

func (e envFlag) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("want KEY=VALUE, got %q", v)
	}
	e[k] = val
	return nil
}

// run parses flags, starts the cluster and blocks until ctx is done.
func run(ctx context.Context, args []string, getenv config.Getenv, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("scc-local", flag.ContinueOnError)
	fs.SetOutput(stderr)
	brokers := fs.Int("brokers", 2, "number of brokers")
	frontends := fs.Int("frontends", 2, "number of frontends")
	basePort := fs.Int("base-port", 7777, "state port; brokers at +1111 (8888…), frontends at +223 (8000…), gossip from +169; admin ports (metrics, status page) at the state's +1 and every other node's port +100; 0 picks free ports")
	host := fs.String("host", "127.0.0.1", "address every node binds and advertises")
	binDir := fs.String("bin-dir", "", "directory holding scc-state, scc-broker and scc-frontend (default: this executable's directory)")
	controlPort := fs.Int("control-port", 7700, "port of the control endpoint; 0 picks a free one")
	controlHost := fs.String("control-host", "127.0.0.1", "address the control endpoint binds (it can kill nodes: keep it on loopback)")
	authKey := fs.String("auth-key", "", "SCC_AUTH_KEY for inter-node links (default: $SCC_AUTH_KEY, else a random key for this run)")
	controlToken := fs.String("control-token", "", "token every POST to the control endpoint must send in the "+localcluster.ControlTokenHeader+" header (default: $SCC_LOCAL_CONTROL_TOKEN, else a random token printed at start)")
	clientKey := fs.String("client-auth-key", "", "SCC_CLIENT_AUTH_KEY for client JWTs (default: $SCC_CLIENT_AUTH_KEY, else a random key for this run)")
	color := fs.String("color", "auto", "color the output prefixes: auto, always or never (NO_COLOR=1 means never)")
	readyTimeout := fs.Duration("ready-timeout", 60*time.Second, "how long to wait for every node to become ready")
	stopTimeout := fs.Duration("stop-timeout", 5*time.Second, "how long a node may take to exit after SIGTERM before it is killed")
	useTLS := fs.Bool("tls", false, "mutual TLS on every link, with a throwaway CA and certificate generated for this run")
	clientTLS := fs.Bool("client-tls", false, "frontends serve wss:// with a certificate of the same throwaway CA (its file is printed, for scc-bench -tls-ca)")
	extra := envFlag{}
	fs.Var(extra, "env", "KEY=VALUE added to every node's environment (repeatable), e.g. -env SCC_STATE_SERVER_STARTUP_DELAY=1s")
	fs.Usage = func() {
		fmt.Fprintf(stderr, `Usage: scc-local [flags]

Runs a local sccgo cluster (1 state, N brokers, M frontends) as child
processes, prints their URLs once ready, and stops them all on Ctrl-C.
Every node inherits this environment (so SCC_* variables pass through),
then gets its ports and addresses, then the -env values.

Flags:
`)
		fs.PrintDefaults()
		fmt.Fprintf(stderr, "\n%s", localcluster.ControlUsage("http://127.0.0.1:7700", "<token>"))
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	colorMode, err := parseColor(*color, getenv)
	if err != nil {
		return err
	}
	if *binDir == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("finding the binaries: %w (pass -bin-dir)", err)
		}
		*binDir = filepath.Dir(exe)
	}
	if *authKey == "" {
		*authKey = orRandom(getenv("SCC_AUTH_KEY"))
	}
	if *clientKey == "" {
		*clientKey = orRandom(getenv("SCC_CLIENT_AUTH_KEY"))
	}
	if *controlToken == "" {
		*controlToken = orRandom(getenv("SCC_LOCAL_CONTROL_TOKEN"))
	}
	insecureEnv := getenv(config.InsecureNoAuthEnv)
	if v, ok := extra[config.InsecureNoAuthEnv]; ok {
		insecureEnv = v
	}
	insecure, _ := config.ParseBool(insecureEnv)
	if err := config.CheckAuthKey([]byte(*authKey), insecure); err != nil {
		return fmt.Errorf("-auth-key: %w", err) // the nodes would refuse it
	}

	log := slog.New(slog.NewTextHandler(stderr, nil))
	ctl, err := net.Listen("tcp", net.JoinHostPort(*controlHost, strconv.Itoa(*controlPort)))
	if err != nil {
		return fmt.Errorf("control endpoint: %w", err)
	}
	defer ctl.Close()

	c, err := localcluster.Start(ctx, localcluster.Options{
		BinDir:        *binDir,
		Brokers:       *brokers,
		Frontends:     *frontends,
		Host:          *host,
		BasePort:      *basePort,
		AuthKey:       *authKey,
		ClientAuthKey: *clientKey,
		BaseEnv:       os.Environ(),
		ExtraEnv:      extra,
		Stdout:        stdout,
		Color:         colorMode,
		Logger:        log,
		StopTimeout:   *stopTimeout,
		TLS:           *useTLS,
		ClientTLS:     *clientTLS,
	})
	if err != nil {
		if strings.Contains(err.Error(), "in use") {
			err = fmt.Errorf("%w (pick another -base-port, or -base-port 0 for free ports)", err)
		}
		return err
	}
	srv := &http.Server{Handler: c.ControlHandler(*controlToken), ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctl) }()
	shutdown := func() error {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			srv.Close()
		}
		<-served
		return c.Close()
	}

	rctx, cancel := context.WithTimeout(ctx, *readyTimeout)
	err = c.WaitReady(rctx)
	cancel()
	if err != nil {
		cerr := shutdown()
		if ctx.Err() != nil {
			return cerr // interrupted while starting: not a failure
		}
		return errors.Join(err, cerr)
	}
	io.WriteString(stdout, banner(c, "http://"+ctl.Addr().String(), *controlToken))

	select {
	case <-ctx.Done():
		log.Info("stopping every node")
	case err := <-served:
		served <- err // let shutdown's receive see it
		log.Error("control endpoint stopped", "err", err)
	}
	return shutdown()
}

// banner lists what a developer can open once the cluster is ready.
func banner(c *localcluster.Cluster, control, token string) string {
	var b strings.Builder
	procs := c.Procs()
	var nb, nf int
	for _, p := range procs {
		switch p.Role {
		case localcluster.RoleBroker:
			nb++
		case localcluster.RoleFrontend:
			nf++
		}
	}
	fmt.Fprintf(&b, "\nsccgo local cluster ready: 1 state, %d brokers, %d frontends\n", nb, nf)
	urls := c.FrontendURLs()
	for i, u := range urls {
		label := ""
		if i == 0 {
			label = "clients:"
		}
		fmt.Fprintf(&b, "  %-9s %s\n", label, u)
	}
	fmt.Fprintf(&b, "  %-9s %s\n", "status:", c.StatusURL())
	for _, p := range procs {
		if p.Role == localcluster.RoleFrontend && p.Running {
			fmt.Fprintf(&b, "  %-9s %s   (every node's admin_port: curl %s/procs)\n", "metrics:", c.AdminURL(p.Name, "/metrics"), control)
			break
		}
	}
	if demo := c.DemoURL(); demo != "" {
		fmt.Fprintf(&b, "  %-9s %s\n", "demo:", demo)
		if len(urls) > 1 {
			fmt.Fprintf(&b, "  %-9s %s?url=%s   (same room, another frontend)\n", "", demo, urls[1])
		}
	}
	if ca := c.CAFile(); ca != "" {
		fmt.Fprintf(&b, "  %-9s %s   (scc-bench -tls-ca %s)\n", "TLS CA:", ca, ca)
	}
	fmt.Fprintf(&b, "  %-9s %s/   (try: curl %s/procs)\n", "control:", control, control)
	fmt.Fprintf(&b, "  %-9s %s   (POSTs send it as %s: curl -X POST -H '%s: %s' %s/brokers)\n",
		"token:", token, localcluster.ControlTokenHeader, localcluster.ControlTokenHeader, token, control)
	b.WriteString("Ctrl-C stops everything.\n\n")
	return b.String()
}

func parseColor(v string, getenv config.Getenv) (localcluster.ColorMode, error) {
	switch v {
	case "auto":
		if getenv("NO_COLOR") != "" {
			return localcluster.ColorNever, nil
		}
		return localcluster.ColorAuto, nil
	case "always":
		return localcluster.ColorAlways, nil
	case "never":
		return localcluster.ColorNever, nil
	}
	return 0, fmt.Errorf("-color %q: want auto, always or never", v)
}

// orRandom returns v, or a fresh random key if v is empty, so a local
// cluster never runs with an empty inter-node key by accident.
func orRandom(v string) string {
	if v != "" {
		return v
	}
	b := make([]byte, 32)
	rand.Read(b)
	return hex.EncodeToString(b)
}
