package localcluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Role is a node's job in the cluster; it names the binary ("scc-"+role).
type Role string

// The three roles.
const (
	RoleState    Role = "state"
	RoleBroker   Role = "broker"
	RoleFrontend Role = "frontend"
)

// Errors returned by Cluster methods.
var (
	// ErrClosed is returned by every method after Close.
	ErrClosed = errors.New("localcluster: cluster is closed")
	// ErrUnknownProc is returned for a name that is not a process of the
	// expected role.
	ErrUnknownProc = errors.New("localcluster: no such process")
)

// Options configures a local cluster. The zero value of every field but
// BinDir has a usable default.
type Options struct {
	// BinDir holds scc-state, scc-broker and scc-frontend (make build puts
	// them in bin/). Required.
	BinDir string
	// Brokers and Frontends are how many of each Start launches (default
	// 0; more can be added later).
	Brokers, Frontends int
	// Host is the address every node binds and advertises. Default
	// 127.0.0.1.
	Host string
	// BasePort lays out fixed ports: state on BasePort, brokers from
	// BasePort+1111, frontends from BasePort+223, gossip from BasePort+169
	// (with 7777: 7777, 8888…, 8000…, 7946…); admin ports at the state's
	// port + 1 and the other service ports + 100 (7778, 8988…, 8100…).
	// 0 picks free ports, which tests must use.
	BasePort int
	// AuthKey is SCC_AUTH_KEY for every node (inter-node links); empty
	// picks a random key for this cluster. The binaries refuse a key
	// shorter than 32 bytes unless ExtraEnv sets SCC_INSECURE_NO_AUTH.
	AuthKey string
	// ClientAuthKey is SCC_CLIENT_AUTH_KEY for the frontends (client JWTs);
	// empty leaves it unset.
	ClientAuthKey string
	// TLS puts every link on mutual TLS (SCC_TLS_*) with a throwaway CA
	// and certificate generated into a temporary directory, removed by
	// Close. The state and broker ports then serve HTTPS.
	TLS bool
	// ClientTLS makes the frontends serve wss:// and HTTPS
	// (SCC_CLIENT_TLS_*) with a certificate of the same throwaway CA;
	// CAFile names the CA for clients.
	ClientTLS bool
	// BaseEnv is the environment every child starts from (scc-local passes
	// os.Environ()); nil starts from an empty one. The cluster's own
	// variables override it and ExtraEnv overrides both.
	BaseEnv []string
	// ExtraEnv is added to every child's environment last, e.g. shorter
	// SCC_STATE_SERVER_STARTUP_DELAY for tests.
	ExtraEnv map[string]string
	// Stdout receives every line the children print, prefixed with the
	// child's name. nil discards it.
	Stdout io.Writer
	// Color says whether prefixes are colored. Default ColorAuto (only when
	// Stdout is a terminal).
	Color ColorMode
	// Logger receives the supervisor's own events (start, exit, crash);
	// nil discards them.
	Logger *slog.Logger
	// StopTimeout bounds how long a SIGTERMed child may take to exit before
	// it is SIGKILLed (Close, restarts). Default 5s.
	StopTimeout time.Duration
	// PollInterval is how often readiness is polled. Default 100ms.
	PollInterval time.Duration
	// ProbeTimeout bounds one /readyz request. Default 1s.
	ProbeTimeout time.Duration
	// OpTimeout bounds how long a control-endpoint request waits for a node
	// it started to become ready. Default 30s.
	OpTimeout time.Duration
}

func (o Options) withDefaults() Options {
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	if o.StopTimeout <= 0 {
		o.StopTimeout = 5 * time.Second
	}
	if o.PollInterval <= 0 {
		o.PollInterval = 100 * time.Millisecond
	}
	if o.ProbeTimeout <= 0 {
		o.ProbeTimeout = time.Second
	}
	if o.OpTimeout <= 0 {
		o.OpTimeout = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.AuthKey == "" {
		var b [32]byte
		_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
		o.AuthKey = hex.EncodeToString(b[:])
	}
	return o
}

// Validate reports whether o can start a cluster.
func (o Options) Validate() error {
	if o.BinDir == "" {
		return errors.New("localcluster: BinDir is required")
	}
	if o.Brokers < 0 || o.Frontends < 0 {
		return errors.New("localcluster: Brokers and Frontends must not be negative")
	}
	if o.BasePort < 0 || o.BasePort > 65535-brokerPortOffset {
		return fmt.Errorf("localcluster: BasePort %d out of range", o.BasePort)
	}
	var missing []string
	for _, r := range []Role{RoleState, RoleBroker, RoleFrontend} {
		p := binPath(o.BinDir, r)
		fi, err := os.Stat(p)
		if err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("localcluster: missing executables (run make build): %s", strings.Join(missing, ", "))
	}
	return nil
}

func binPath(dir string, r Role) string { return filepath.Join(dir, "scc-"+string(r)) }

// ProcInfo describes one process of the cluster.
type ProcInfo struct {
	// Name is unique in the cluster: "state", "broker-1", "frontend-2".
	Name string `json:"name"`
	Role Role   `json:"role"`
	// PID of the current or last run; 0 if it never started.
	PID int `json:"pid"`
	// Port is the node's service port (WebSocket and HTTP): clients' for
	// a frontend, links' for the others; /healthz and /readyz are here too.
	Port int `json:"port"`
	// AdminPort serves /metrics, /healthz and /readyz, and the state
	// server's status page and /status (SCC_ADMIN_PORT).
	AdminPort int `json:"admin_port"`
	// GossipPort is its memberlist port (TCP and UDP).
	GossipPort int  `json:"gossip_port"`
	Running    bool `json:"running"`
	// Crashed is true when the last run exited without being asked to.
	Crashed bool `json:"crashed"`
	// Exit is the last run's exit status ("exit status 1", "signal:
	// killed"); empty while it runs.
	Exit string `json:"exit,omitempty"`
	// Starts counts how many times the process was started.
	Starts int `json:"starts"`
}

// proc is one supervised node; its run fields are guarded by Cluster.mu.
type proc struct {
	name       string
	role       Role
	idx        int // creation order, for colors and sorting
	port       int
	adminPort  int
	gossipPort int

	p        *os.Process
	done     chan struct{} // closed when the current run is reaped
	running  bool
	stopping bool // asked to exit: its exit is not a crash
	crashed  bool
	exit     string
	starts   int
}

func (p *proc) info() ProcInfo {
	in := ProcInfo{Name: p.name, Role: p.role, Port: p.port, AdminPort: p.adminPort, GossipPort: p.gossipPort,
		Running: p.running, Crashed: p.crashed, Exit: p.exit, Starts: p.starts}
	if p.p != nil {
		in.PID = p.p.Pid
	}
	return in
}

// Cluster is a running local cluster. Its methods are safe for concurrent
// use; lifecycle operations (start, stop, restart, Close) are serialised.
type Cluster struct {
	opts     Options
	out      *output
	dialHost string // where clients and nodes reach Host
	client   *http.Client
	log      *slog.Logger
	tls      *tlsFiles // nil without TLS or ClientTLS

	opMu sync.Mutex // serialises lifecycle operations; taken before mu
	mu   sync.Mutex
	// Guarded by mu.
	procs     []*proc
	ports     *ports
	nBrokers  int // names handed out so far
	nFronts   int
	closed    bool
	closeErr  error
	wg        sync.WaitGroup // one per reaper goroutine
	closeOnce sync.Once
}

// Start launches a state server, opts.Brokers brokers and opts.Frontends
// frontends and returns without waiting for them to be ready (see
// WaitReady). If any of them fails to start, everything started so far is
// stopped and the error returned.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	c := &Cluster{
		opts:     opts,
		out:      newOutput(opts.Stdout, opts.Color),
		dialHost: dialHost(opts.Host),
		log:      opts.Logger,
		ports:    newPorts(opts.Host, opts.BasePort),
	}
	if opts.TLS || opts.ClientTLS {
		tf, err := makeTLS(c.dialHost)
		if err != nil {
			return nil, err
		}
		c.tls = tf
	}
	c.client = &http.Client{
		Timeout:   opts.ProbeTimeout,
		Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil, TLSClientConfig: c.probeTLS()},
	}
	if opts.Brokers+opts.Frontends+1 > 10 {
		c.out.width = len("frontend-10")
	}
	fail := func(err error) (*Cluster, error) {
		c.Close()
		return nil, err
	}
	if _, err := c.add(RoleState); err != nil {
		return fail(err)
	}
	for range opts.Brokers {
		if _, err := c.add(RoleBroker); err != nil {
			return fail(err)
		}
	}
	for range opts.Frontends {
		if _, err := c.add(RoleFrontend); err != nil {
			return fail(err)
		}
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	return c, nil
}

// dialHost turns a bind address into one that can be dialled and put in
// URLs: the unspecified address becomes loopback.
func dialHost(host string) string {
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		if ip.To4() != nil {
			return "127.0.0.1"
		}
		return "::1"
	}
	return host
}

// add allocates a new process of role and starts it.
func (c *Cluster) add(role Role) (string, error) {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return "", ErrClosed
	}
	pr := &proc{role: role, idx: len(c.procs)}
	var idx int
	switch role {
	case RoleState:
		pr.name = "state"
	case RoleBroker:
		idx = c.nBrokers
		pr.name = "broker-" + strconv.Itoa(idx+1)
	case RoleFrontend:
		idx = c.nFronts
		pr.name = "frontend-" + strconv.Itoa(idx+1)
	}
	var err error
	if pr.port, err = c.ports.service(role, idx); err != nil {
		c.mu.Unlock()
		return "", err
	}
	if pr.adminPort, err = c.ports.admin(role, pr.port); err != nil {
		c.mu.Unlock()
		return "", err
	}
	if pr.gossipPort, err = c.ports.gossip(); err != nil {
		c.mu.Unlock()
		return "", err
	}
	switch role {
	case RoleBroker:
		c.nBrokers++
	case RoleFrontend:
		c.nFronts++
	}
	c.procs = append(c.procs, pr)
	if w := len(pr.name); w > c.out.width {
		c.out.width = w
	}
	c.mu.Unlock()
	return pr.name, c.startLocked(pr)
}

// env builds a child's environment: base, then the cluster's variables,
// then ExtraEnv (the last value of a duplicated key wins in exec).
func (c *Cluster) env(pr *proc) []string {
	hp := func(port int) string { return net.JoinHostPort(c.dialHost, strconv.Itoa(port)) }
	var state *proc
	var seeds []string
	for _, o := range c.procs {
		if o.role == RoleState {
			state = o
		}
		if o != pr {
			seeds = append(seeds, hp(o.gossipPort))
		}
	}
	env := append([]string{}, c.opts.BaseEnv...)
	set := func(k, v string) { env = append(env, k+"="+v) }
	set("SCC_AUTH_KEY", c.opts.AuthKey)
	// The name is the node ID: readable on the status page, and a broker
	// restarted under it keeps its ring place.
	set("SCC_INSTANCE_ID", pr.name)
	set("SCC_INSTANCE_IP", c.dialHost)
	set("SCC_GOSSIP_PORT", strconv.Itoa(pr.gossipPort))
	set("SCC_GOSSIP_BIND", c.opts.Host)
	set("SCC_GOSSIP_SEEDS", strings.Join(seeds, ","))
	set("SCC_ADMIN_PORT", strconv.Itoa(pr.adminPort))
	switch pr.role {
	case RoleState:
		set("SCC_STATE_SERVER_HOST", c.opts.Host)
		set("SCC_STATE_SERVER_PORT", strconv.Itoa(pr.port))
	case RoleBroker:
		set("SCC_BROKER_HOST", c.opts.Host)
		set("SCC_BROKER_SERVER_PORT", strconv.Itoa(pr.port))
	case RoleFrontend:
		set("SCC_FRONTEND_HOST", c.opts.Host)
		set("SOCKETCLUSTER_PORT", strconv.Itoa(pr.port))
		if c.opts.ClientAuthKey != "" {
			set("SCC_CLIENT_AUTH_KEY", c.opts.ClientAuthKey)
		}
	}
	c.tlsEnv(pr.role, set)
	if pr.role != RoleState && state != nil {
		set("SCC_STATE_SERVER_HOST", c.dialHost)
		set("SCC_STATE_SERVER_PORT", strconv.Itoa(state.port))
	}
	for _, k := range slices.Sorted(maps.Keys(c.opts.ExtraEnv)) {
		set(k, c.opts.ExtraEnv[k])
	}
	return env
}

// startLocked starts a new run of pr. The caller holds opMu and pr is not
// running.
func (c *Cluster) startLocked(pr *proc) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	if pr.running {
		c.mu.Unlock()
		return nil
	}
	env := c.env(pr)
	prefix := c.out.prefix(pr.name, pr.idx)
	c.mu.Unlock()

	stdout := &lineWriter{out: c.out, prefix: prefix}
	stderr := &lineWriter{out: c.out, prefix: prefix}
	cmd := &exec.Cmd{
		Path:   binPath(c.opts.BinDir, pr.role),
		Args:   []string{"scc-" + string(pr.role)},
		Env:    env,
		Stdout: stdout,
		Stderr: stderr,
		// Own process group: a terminal's Ctrl-C reaches only the
		// supervisor, which stops the children in order. Pdeathsig kills
		// the child if the supervisor dies without doing so. (Pdeathsig
		// fires when the forking OS thread exits; the Go runtime keeps its
		// threads, and no goroutine here locks one.)
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL},
		// A grandchild holding the output pipes must not block the reaper.
		WaitDelay: time.Second,
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", pr.name, err)
	}
	done := make(chan struct{})
	c.mu.Lock()
	pr.p = cmd.Process
	pr.done = done
	pr.running = true
	pr.stopping = false
	pr.crashed = false
	pr.exit = ""
	pr.starts++
	c.wg.Add(1)
	c.mu.Unlock()
	c.log.Info("process started", "node", pr.name, "role", string(pr.role), "pid", cmd.Process.Pid,
		"port", pr.port, "admin_port", pr.adminPort, "gossip_port", pr.gossipPort)
	go c.reap(pr, cmd, done, stdout, stderr)
	return nil
}

// reap waits for one run of pr to end and records how it ended.
func (c *Cluster) reap(pr *proc, cmd *exec.Cmd, done chan struct{}, stdout, stderr *lineWriter) {
	defer c.wg.Done()
	err := cmd.Wait()
	stdout.flush()
	stderr.flush()
	status := "exited"
	if cmd.ProcessState != nil {
		status = cmd.ProcessState.String()
	} else if err != nil {
		status = err.Error()
	}
	c.mu.Lock()
	expected := pr.stopping || c.closed
	// Logged before the exit is visible, so whoever sees the process
	// stopped also finds why in the log.
	if expected {
		c.log.Info("process exited", "node", pr.name, "role", string(pr.role), "pid", cmd.Process.Pid, "reason", status)
	} else {
		c.log.Warn("process exited unexpectedly", "node", pr.name, "role", string(pr.role), "pid", cmd.Process.Pid, "err", status)
	}
	pr.running = false
	pr.crashed = !expected
	pr.exit = status
	c.mu.Unlock()
	close(done)
}

// lookup finds a process by name and role ("" matches any role).
func (c *Cluster) lookup(name string, role Role) (*proc, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	for _, p := range c.procs {
		if p.name == name && (role == "" || p.role == role) {
			return p, nil
		}
	}
	if role == "" {
		return nil, fmt.Errorf("%w: %q", ErrUnknownProc, name)
	}
	return nil, fmt.Errorf("%w: no %s named %q", ErrUnknownProc, role, name)
}

func (c *Cluster) state() *proc {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.procs {
		if p.role == RoleState {
			return p
		}
	}
	return nil
}

// signal marks pr as asked to stop and sends sig to its current run. It
// returns the run's done channel (nil if it never ran); a process that is
// not running is left alone.
func (c *Cluster) signal(pr *proc, sig syscall.Signal) <-chan struct{} {
	c.mu.Lock()
	if !pr.running {
		done := pr.done
		c.mu.Unlock()
		return done
	}
	pr.stopping = true
	p, done := pr.p, pr.done
	c.mu.Unlock()
	// os.ErrProcessDone just means it exited meanwhile; the reaper records it.
	_ = p.Signal(sig)
	return done
}

// awaitOrKill waits up to StopTimeout for live[i] (i in idx) to exit and
// SIGKILLs the ones that have not.
func (c *Cluster) awaitOrKill(live []*proc, dones []<-chan struct{}, idx []int) {
	deadline := time.NewTimer(c.opts.StopTimeout)
	defer deadline.Stop()
wait:
	for _, i := range idx {
		select {
		case <-dones[i]:
		case <-deadline.C:
			break wait
		}
	}
	for _, i := range idx {
		if waitDone(dones[i], 0) {
			continue
		}
		p := live[i]
		c.log.Warn("process ignored SIGTERM; killing", "node", p.name, "role", string(p.role), "reason", "stop_timeout")
		c.signal(p, syscall.SIGKILL)
	}
}

// waitDone waits up to d for done to close (nil counts as closed).
func waitDone(done <-chan struct{}, d time.Duration) bool {
	if done == nil {
		return true
	}
	select {
	case <-done:
		return true
	default:
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// kill SIGKILLs pr and waits until it is reaped.
func (c *Cluster) kill(pr *proc) error {
	if !waitDone(c.signal(pr, syscall.SIGKILL), c.opts.StopTimeout) {
		return fmt.Errorf("localcluster: %s did not exit within %v of SIGKILL", pr.name, c.opts.StopTimeout)
	}
	return nil
}

// stop SIGTERMs pr, waits StopTimeout, then SIGKILLs it.
func (c *Cluster) stop(pr *proc) error {
	if waitDone(c.signal(pr, syscall.SIGTERM), c.opts.StopTimeout) {
		return nil
	}
	c.log.Warn("process ignored SIGTERM; killing", "node", pr.name, "role", string(pr.role),
		"reason", "stop_timeout")
	return c.kill(pr)
}

// WaitReady polls /readyz of every running node until all answer 200. It
// fails early, naming the node, if a node that was not asked to stop has
// exited; nodes stopped on purpose are skipped.
func (c *Cluster) WaitReady(ctx context.Context) error {
	return c.waitReady(ctx, nil)
}

// WaitProcReady polls one node's /readyz until it answers 200, failing
// early if the node exits.
func (c *Cluster) WaitProcReady(ctx context.Context, name string) error {
	pr, err := c.lookup(name, "")
	if err != nil {
		return err
	}
	return c.waitReady(ctx, pr)
}

func (c *Cluster) waitReady(ctx context.Context, only *proc) error {
	t := time.NewTicker(c.opts.PollInterval)
	defer t.Stop()
	for {
		pending, err := c.checkReady(ctx, only)
		if err != nil {
			return err
		}
		if len(pending) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s to be ready: %w", strings.Join(pending, ", "), ctx.Err())
		case <-t.C:
		}
	}
}

// checkReady probes every node once and returns the names not yet ready.
func (c *Cluster) checkReady(ctx context.Context, only *proc) ([]string, error) {
	type target struct {
		name string
		role Role
		port int
	}
	var targets []target
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	for _, p := range c.procs {
		if only != nil && p != only {
			continue
		}
		switch {
		case p.running:
			targets = append(targets, target{p.name, p.role, p.port})
		case p.crashed:
			c.mu.Unlock()
			return nil, fmt.Errorf("localcluster: %s exited: %s", p.name, p.exit)
		case only != nil:
			c.mu.Unlock()
			return nil, fmt.Errorf("localcluster: %s is not running", p.name)
		}
	}
	c.mu.Unlock()
	var pending []string
	for _, tg := range targets {
		if !c.probe(ctx, tg.role, tg.port, "/readyz") {
			pending = append(pending, tg.name)
		}
	}
	return pending, nil
}

// probe reports whether GET path on port answers 200.
func (c *Cluster) probe(ctx context.Context, role Role, port int, path string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.httpURL(role, port, path), nil)
	if err != nil {
		return false
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func (c *Cluster) httpURL(role Role, port int, path string) string {
	scheme := "http://"
	if c.secure(role) {
		scheme = "https://"
	}
	return scheme + net.JoinHostPort(c.dialHost, strconv.Itoa(port)) + path
}

// adminURL is a node's admin endpoint: admin ports serve plain HTTP even
// when the node's main port serves TLS.
func (c *Cluster) adminURL(port int, path string) string {
	return "http://" + net.JoinHostPort(c.dialHost, strconv.Itoa(port)) + path
}

// FrontendURLs returns the client WebSocket URL of every running frontend,
// ws://host:port/socketcluster/ (wss:// with ClientTLS), in creation
// order.
func (c *Cluster) FrontendURLs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var urls []string
	for _, p := range c.procs {
		if p.role == RoleFrontend && p.running {
			scheme := "ws://"
			if c.opts.ClientTLS {
				scheme = "wss://"
			}
			urls = append(urls, scheme+net.JoinHostPort(c.dialHost, strconv.Itoa(p.port))+"/socketcluster/")
		}
	}
	return urls
}

// StatusURL returns the state server's status page on its admin port,
// http://host:port/; /status beside it is the JSON.
func (c *Cluster) StatusURL() string {
	if s := c.state(); s != nil {
		return c.adminURL(s.adminPort, "/")
	}
	return ""
}

// AdminURL returns http://host:adminport<path> of the named process, e.g.
// its /metrics, or "" if there is no such process.
func (c *Cluster) AdminURL(name, path string) string {
	pr, err := c.lookup(name, "")
	if err != nil {
		return ""
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.adminURL(pr.adminPort, path)
}

// StateAddr returns the state server's host:port.
func (c *Cluster) StateAddr() string {
	if s := c.state(); s != nil {
		return net.JoinHostPort(c.dialHost, strconv.Itoa(s.port))
	}
	return ""
}

// DemoURL returns the demo chat page on the first running frontend,
// http://host:port/demo/, or "" if no frontend runs.
func (c *Cluster) DemoURL() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.procs {
		if p.role == RoleFrontend && p.running {
			return c.httpURL(RoleFrontend, p.port, "/demo/")
		}
	}
	return ""
}

// Procs describes every process, the state first, then brokers, then
// frontends, each in creation order. Stopped processes stay listed.
func (c *Cluster) Procs() []ProcInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]ProcInfo, 0, len(c.procs))
	for _, r := range []Role{RoleState, RoleBroker, RoleFrontend} {
		for _, p := range c.procs {
			if p.role == r {
				out = append(out, p.info())
			}
		}
	}
	return out
}

// Proc describes one process by name.
func (c *Cluster) Proc(name string) (ProcInfo, error) {
	pr, err := c.lookup(name, "")
	if err != nil {
		return ProcInfo{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return pr.info(), nil
}

// AddBroker starts a new broker on the next port and waits until its
// /readyz answers (bounded by ctx). It returns the broker's name even when
// the wait fails, since the broker was started.
func (c *Cluster) AddBroker(ctx context.Context) (string, error) {
	return c.addReady(ctx, RoleBroker)
}

// AddFrontend starts a new frontend on the next port and waits until it is
// ready, like AddBroker.
func (c *Cluster) AddFrontend(ctx context.Context) (string, error) {
	return c.addReady(ctx, RoleFrontend)
}

func (c *Cluster) addReady(ctx context.Context, role Role) (string, error) {
	name, err := c.add(role)
	if err != nil {
		return name, err
	}
	return name, c.WaitProcReady(ctx, name)
}

// StopBroker stops a broker. graceful sends SIGTERM (the broker leaves the
// ring without losing messages, then exits) and returns at once; use
// WaitExit to wait for it. !graceful sends SIGKILL and returns once the
// broker is reaped. Stopping a broker that is not running does nothing.
func (c *Cluster) StopBroker(name string, graceful bool) error {
	pr, err := c.lookup(name, RoleBroker)
	if err != nil {
		return err
	}
	if graceful {
		c.signal(pr, syscall.SIGTERM)
		return nil
	}
	c.opMu.Lock()
	defer c.opMu.Unlock()
	return c.kill(pr)
}

// WaitExit waits until the named process is not running (bounded by ctx).
func (c *Cluster) WaitExit(ctx context.Context, name string) error {
	pr, err := c.lookup(name, "")
	if err != nil {
		return err
	}
	c.mu.Lock()
	done, running := pr.done, pr.running
	c.mu.Unlock()
	if !running {
		return nil
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for %s to exit: %w", name, ctx.Err())
	}
}

// RestartBroker starts a broker again on the same port with the same ID,
// so it keeps its ring place. A running broker is SIGKILLed first (a crash
// and restart). It waits until the broker is ready, bounded by ctx.
func (c *Cluster) RestartBroker(ctx context.Context, name string) error {
	pr, err := c.lookup(name, RoleBroker)
	if err != nil {
		return err
	}
	if err := c.restart(pr); err != nil {
		return err
	}
	return c.waitReady(ctx, pr)
}

func (c *Cluster) restart(pr *proc) error {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	if err := c.kill(pr); err != nil {
		return err
	}
	return c.startLocked(pr)
}

// KillState SIGKILLs the state server and returns once it is reaped.
func (c *Cluster) KillState() error {
	pr := c.state()
	if pr == nil {
		return ErrClosed
	}
	c.opMu.Lock()
	defer c.opMu.Unlock()
	return c.kill(pr)
}

// StartState starts the state server again on its port if it is not
// running, and waits until it is ready, bounded by ctx.
func (c *Cluster) StartState(ctx context.Context) error {
	pr := c.state()
	if pr == nil {
		return ErrClosed
	}
	c.opMu.Lock()
	err := c.startLocked(pr)
	c.opMu.Unlock()
	if err != nil {
		return err
	}
	return c.waitReady(ctx, pr)
}

// KillFrontend SIGKILLs a frontend and returns once it is reaped.
func (c *Cluster) KillFrontend(name string) error {
	pr, err := c.lookup(name, RoleFrontend)
	if err != nil {
		return err
	}
	c.opMu.Lock()
	defer c.opMu.Unlock()
	return c.kill(pr)
}

// Close stops every process: SIGTERM to the brokers and frontends, up to
// StopTimeout for them to exit, SIGKILL to the rest; then the same for the
// state server. It returns once every child is reaped
// (or, if one survives SIGKILL, with an error naming it). It is idempotent.
func (c *Cluster) Close() error {
	c.closeOnce.Do(func() {
		c.opMu.Lock()
		defer c.opMu.Unlock()
		c.mu.Lock()
		c.closed = true
		var live []*proc
		for _, p := range c.procs {
			if p.running {
				p.stopping = true
				live = append(live, p)
			}
		}
		c.mu.Unlock()
		// Brokers and frontends first, while the state server can still
		// coordinate their leave (a broker's SIGTERM asks it for a reshard
		// out and waits for Released); the state server last. Each phase
		// gets StopTimeout before its stragglers are SIGKILLed.
		dones := make([]<-chan struct{}, len(live))
		for _, phase := range [][]Role{{RoleFrontend, RoleBroker}, {RoleState}} {
			var idx []int
			for i, p := range live {
				if slices.Contains(phase, p.role) {
					dones[i] = c.signal(p, syscall.SIGTERM)
					idx = append(idx, i)
				}
			}
			c.awaitOrKill(live, dones, idx)
		}
		var stuck []string
		for i, p := range live {
			if !waitDone(dones[i], c.opts.StopTimeout) {
				stuck = append(stuck, p.name)
			}
		}
		if len(stuck) > 0 {
			c.closeErr = fmt.Errorf("localcluster: %s did not exit after SIGKILL", strings.Join(stuck, ", "))
			return // its reaper is still waiting; do not block on it
		}
		c.wg.Wait()
		if c.tls != nil {
			os.RemoveAll(c.tls.dir)
		}
	})
	return c.closeErr
}
