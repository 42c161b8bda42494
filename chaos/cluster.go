package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sccgo/sccgo/internal/localcluster"
	"github.com/sccgo/sccgo/internal/ring"
	"github.com/sccgo/sccgo/protocol"
)

// AuthKey is the inter-node key every chaos cluster uses.
const AuthKey = "chaos-cluster-key-0123456789abcdef0123"

// DefaultEnv is added to every chaos node's environment (Spec.Env
// overrides it): a production-like state startup delay, so a restarted
// state server hears every node before it commits, and a short scale-out
// delay so scenarios do not wait 5s for a new broker.
func DefaultEnv() map[string]string {
	return map[string]string{
		"SCC_STATE_SERVER_STARTUP_DELAY":   "1s",
		"SCC_STATE_SERVER_SCALE_OUT_DELAY": "1s",
		"SCC_LOG_LEVEL":                    "info",
	}
}

// moduleRoot walks up from the working directory to the directory holding
// go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("chaos: no go.mod above the working directory")
		}
		dir = parent
	}
}

// BinDir returns the directory holding the binaries: SCC_BIN_DIR, else the
// module's bin/ (make build fills it).
func BinDir() (string, error) {
	if d := os.Getenv("SCC_BIN_DIR"); d != "" {
		return filepath.Abs(d)
	}
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "bin"), nil
}

// ResultsDir returns where results go (SCC_CHAOS_RESULTS, else
// chaos/results in the module) and creates it.
func ResultsDir() (string, error) {
	dir := os.Getenv("SCC_CHAOS_RESULTS")
	if dir == "" {
		root, err := moduleRoot()
		if err != nil {
			return "", err
		}
		dir = filepath.Join(root, "chaos", "results")
	}
	return dir, os.MkdirAll(dir, 0o755)
}

// RequireBinaries returns the binaries' directory. When they are missing
// it fails t if CI is set and skips it otherwise.
func RequireBinaries(t testing.TB) string {
	t.Helper()
	dir, err := BinDir()
	if err == nil {
		err = localcluster.Options{BinDir: dir}.Validate()
	}
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI is set but the real binaries are missing: %v", err)
		}
		t.Skipf("real binaries not built (run make build): %v", err)
	}
	return dir
}

// Spec describes a chaos cluster.
type Spec struct {
	// Name labels the output log (<results>/<Name>.log).
	Name string
	// Brokers and Frontends are started at once.
	Brokers, Frontends int
	// Host is the bind and advertise address; default 127.0.0.1.
	Host string
	// Env overrides DefaultEnv for every node.
	Env map[string]string
	// Output, if set, receives the nodes' output instead of the log file.
	Output io.Writer
}

// Cluster is a running cluster of real processes with helpers to read its
// status and metrics.
type Cluster struct {
	*localcluster.Cluster
	t       testing.TB
	LogPath string
	Host    string
	http    *http.Client
}

// StartCluster starts a cluster for spec, waits until every node is ready
// (30s at most) and stops it when t ends.
func StartCluster(t testing.TB, spec Spec) *Cluster {
	t.Helper()
	bin := RequireBinaries(t)
	env := DefaultEnv()
	maps.Copy(env, spec.Env)
	// SCC_CHAOS_ENV adds settings to every node of every scenario
	// ("K=V K=V"), to run the suite against a non-default setting.
	for _, kv := range strings.Fields(os.Getenv("SCC_CHAOS_ENV")) {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	out := spec.Output
	var logPath string
	if out == nil {
		dir, err := ResultsDir()
		if err != nil {
			t.Fatal(err)
		}
		name := spec.Name
		if name == "" {
			name = strings.ReplaceAll(t.Name(), "/", "_")
		}
		logPath = filepath.Join(dir, name+".log")
		f, err := os.Create(logPath)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		out = f
	}
	host := spec.Host
	if host == "" {
		host = "127.0.0.1"
	}
	lc, err := localcluster.Start(context.Background(), localcluster.Options{
		BinDir:       bin,
		Brokers:      spec.Brokers,
		Frontends:    spec.Frontends,
		Host:         host,
		AuthKey:      AuthKey,
		BaseEnv:      []string{"PATH=" + os.Getenv("PATH")},
		ExtraEnv:     env,
		Stdout:       out,
		Color:        localcluster.ColorNever,
		PollInterval: 50 * time.Millisecond,
		StopTimeout:  10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{Cluster: lc, t: t, LogPath: logPath, Host: host,
		http: &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}}
	t.Cleanup(func() {
		if err := lc.Close(); err != nil {
			t.Errorf("closing the cluster: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := lc.WaitReady(ctx); err != nil {
		t.Fatalf("cluster not ready: %v (output in %s)", err, logPath)
	}
	return c
}

// Status is the part of the state server's /status this package reads.
type Status struct {
	StartupDone bool   `json:"startup_done"`
	MaxVersion  uint64 `json:"max_version"`
	Ring        *struct {
		Version uint64 `json:"version"`
		Brokers []struct {
			ID   string `json:"ID"`
			Addr string `json:"Addr"`
		} `json:"brokers"`
	} `json:"ring"`
	Reshard *struct {
		Version uint64 `json:"version"`
		Phase   string `json:"phase"`
	} `json:"reshard"`
	Members []struct {
		ID        string `json:"id"`
		Role      string `json:"role"`
		Connected bool   `json:"connected"`
		InRing    bool   `json:"in_ring"`
	} `json:"members"`
}

// RingVersion returns the committed ring's version (0 without a ring).
func (s Status) RingVersion() uint64 {
	if s.Ring == nil {
		return 0
	}
	return s.Ring.Version
}

// RingBrokers returns the committed ring's broker IDs.
func (s Status) RingBrokers() []string {
	if s.Ring == nil {
		return nil
	}
	ids := make([]string, len(s.Ring.Brokers))
	for i, b := range s.Ring.Brokers {
		ids[i] = b.ID
	}
	return ids
}

// RingOf returns the committed ring as the brokers and frontends hash it
// (nil without a ring), to say which broker owns a channel and which is
// its standby.
func (s Status) RingOf() *ring.Ring {
	if s.Ring == nil {
		return nil
	}
	bs := make([]protocol.BrokerInfo, len(s.Ring.Brokers))
	for i, b := range s.Ring.Brokers {
		bs[i] = protocol.BrokerInfo{ID: b.ID, Addr: b.Addr}
	}
	return ring.New(s.Ring.Version, bs)
}

// Status reads the state server's /status.
func (c *Cluster) Status() (Status, error) {
	var st Status
	resp, err := c.http.Get(strings.TrimSuffix(c.StatusURL(), "/") + "/status")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("/status: %s", resp.Status)
	}
	return st, json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(&st)
}

// WaitRing waits until the committed ring has n brokers at a version above
// above, with no reshard in progress, and returns the version.
func (c *Cluster) WaitRing(n int, above uint64, timeout time.Duration) uint64 {
	c.t.Helper()
	var last Status
	var lastErr error
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		last, lastErr = c.Status()
		if lastErr == nil && last.Ring != nil && len(last.Ring.Brokers) == n &&
			last.Ring.Version > above && last.Reshard == nil {
			return last.Ring.Version
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.t.Fatalf("the ring never had %d brokers above version %d within %v (last %+v, err %v)",
		n, above, timeout, last.Ring, lastErr)
	return 0
}

// URL returns http://host:port<path> of the named process.
func (c *Cluster) URL(name, path string) string {
	p, err := c.Proc(name)
	if err != nil {
		return ""
	}
	return "http://" + net.JoinHostPort(c.Host, strconv.Itoa(p.Port)) + path
}

// WSURL returns the client WebSocket URL of the named frontend.
func (c *Cluster) WSURL(name string) string {
	p, err := c.Proc(name)
	if err != nil {
		return ""
	}
	return "ws://" + net.JoinHostPort(c.Host, strconv.Itoa(p.Port)) + "/socketcluster/"
}

// Names returns the names of the running processes of role.
func (c *Cluster) Names(role localcluster.Role) []string {
	var names []string
	for _, p := range c.Procs() {
		if p.Role == role && p.Running {
			names = append(names, p.Name)
		}
	}
	return names
}

// PID returns the named process's current pid (0 if unknown).
func (c *Cluster) PID(name string) int {
	p, err := c.Proc(name)
	if err != nil {
		return 0
	}
	return p.PID
}

// KillBrokers SIGKILLs the named running brokers together, as the loss of
// a host or a zone takes several at once: every signal is sent before the
// first broker is reaped. It returns once all are reaped. A broker that
// exits before the cluster marks it as stopping shows as crashed in Procs.
func (c *Cluster) KillBrokers(names ...string) error {
	for _, name := range names {
		p, err := c.Proc(name)
		if err != nil {
			return err
		}
		if p.Role != localcluster.RoleBroker {
			return fmt.Errorf("chaos: %s is not a broker", name)
		}
		if p.Running && p.PID > 0 {
			if err := syscall.Kill(p.PID, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
				return fmt.Errorf("SIGKILL %s: %w", name, err)
			}
		}
	}
	var errs []error
	for _, name := range names {
		// Already killed: this waits for the reaper.
		if err := c.StopBroker(name, false); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Metrics scrapes the named process's /metrics (on its admin port).
func (c *Cluster) Metrics(name string) (Samples, error) {
	return Scrape(c.http, c.AdminURL(name, "/metrics"))
}

// SumFrontends sums a metric (optionally filtered by label pairs) over
// every running frontend. Unreachable frontends count 0.
func (c *Cluster) SumFrontends(metric string, labels ...string) float64 {
	var sum float64
	for _, name := range c.Names(localcluster.RoleFrontend) {
		s, err := c.Metrics(name)
		if err != nil {
			continue
		}
		sum += s.Sum(metric, labels...)
	}
	return sum
}

// MetricOf returns a metric of the named process (summed over the series
// matching the label pairs), or -1 if it cannot be scraped.
func (c *Cluster) MetricOf(name, metric string, labels ...string) float64 {
	s, err := c.Metrics(name)
	if err != nil {
		return -1
	}
	return s.Sum(metric, labels...)
}

// Counters returns, per running process, every non-zero series of the
// counters that count losses and refusals (see AddCounters), keyed
// "process metric{label=value}".
func (c *Cluster) Counters() map[string]float64 {
	out := map[string]float64{}
	for _, p := range c.Procs() {
		if !p.Running {
			continue
		}
		if s, err := c.Metrics(p.Name); err == nil {
			AddCounters(out, p.Name, s)
		}
	}
	return out
}

// AddCounters adds to out every non-zero counter of s whose name says it
// counts losses, refusals or waits imposed by a limit ("drop", "closes",
// "reject", "timeout", "error" or "paced"), or what idle sockets did
// without their WebSocket state ("detached", "reattach"), keyed
// "proc metric{label=value,...}".
func AddCounters(out map[string]float64, proc string, s Samples) {
	for _, x := range s {
		if x.Value == 0 || !strings.HasSuffix(x.Name, "_total") {
			continue
		}
		n := x.Name
		if !strings.Contains(n, "drop") && !strings.Contains(n, "closes") && !strings.Contains(n, "reject") &&
			!strings.Contains(n, "timeout") && !strings.Contains(n, "error") && !strings.Contains(n, "paced") &&
			!strings.Contains(n, "detached") && !strings.Contains(n, "reattach") && !strings.Contains(n, "held") {
			continue
		}
		key := proc + " " + n
		if len(x.Labels) > 0 {
			var parts []string
			for k, v := range x.Labels {
				parts = append(parts, k+"="+v)
			}
			slices.Sort(parts)
			key += "{" + strings.Join(parts, ",") + "}"
		}
		out[key] += x.Value
	}
}
