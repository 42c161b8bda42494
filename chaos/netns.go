package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Net is a small test network: a Linux bridge in the root namespace
// holding Host (x.x.x.1/24), and network namespaces attached to it by veth
// pairs, each with its own address. Nodes in the root namespace bind Host;
// nodes in a namespace bind its address. Cut and Heal add and remove
// blackhole routes between two namespaces. Everything is removed at
// Close (and when the test ends).
type Net struct {
	t      testing.TB
	tag    string // unique per process: names of links and namespaces
	subnet string // "10.231.N"
	bridge string
	// Host is the bridge's address.
	Host string
	nss  []string
	next int
	cuts map[string]bool // "ns dst" blackhole routes in place
}

// NewNet creates the bridge, or skips t with the reason when network
// namespaces cannot be used here (not root, no ip command, no netns
// support).
func NewNet(t testing.TB) *Net {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the partition scenario needs root for network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("the partition scenario needs the ip command (iproute2)")
	}
	pid := os.Getpid()
	n := &Net{t: t, tag: fmt.Sprint(pid % 100000), subnet: fmt.Sprintf("10.231.%d", pid%250+1),
		cuts: map[string]bool{}}
	n.bridge = "sb" + n.tag
	n.Host = n.subnet + ".1"
	t.Cleanup(n.Close)
	for _, args := range [][]string{
		{"link", "add", n.bridge, "type", "bridge"},
		{"addr", "add", n.Host + "/24", "dev", n.bridge},
		{"link", "set", n.bridge, "up"},
	} {
		if err := ip(args...); err != nil {
			t.Skipf("network namespaces unavailable here: %v", err)
		}
	}
	n.next = 2
	return n
}

// ip runs the ip command.
func ip(args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// AddNS creates a namespace attached to the bridge and returns its name
// and address.
func (n *Net) AddNS(suffix string) (name, addr string) {
	n.t.Helper()
	name = "scc" + n.tag + suffix
	addr = fmt.Sprintf("%s.%d", n.subnet, n.next)
	n.next++
	hostIf, nsIf := "sh"+n.tag+suffix, "sn"+n.tag+suffix
	if err := ip("netns", "add", name); err != nil {
		n.t.Skipf("network namespaces unavailable here: %v", err)
	}
	n.nss = append(n.nss, name)
	for _, args := range [][]string{
		{"link", "add", hostIf, "type", "veth", "peer", "name", nsIf},
		{"link", "set", nsIf, "netns", name},
		{"link", "set", hostIf, "master", n.bridge},
		{"link", "set", hostIf, "up"},
		{"-n", name, "addr", "add", addr + "/24", "dev", nsIf},
		{"-n", name, "link", "set", nsIf, "up"},
		{"-n", name, "link", "set", "lo", "up"},
	} {
		if err := ip(args...); err != nil {
			n.t.Fatalf("setting up namespace %s: %v", name, err)
		}
	}
	return name, addr
}

// Cut drops all traffic between the namespaces a and b (addresses aAddr
// and bAddr): each gets a blackhole route to the other.
func (n *Net) Cut(a, aAddr, b, bAddr string) error {
	for _, r := range [][2]string{{a, bAddr}, {b, aAddr}} {
		if err := ip("-n", r[0], "route", "add", "blackhole", r[1]+"/32"); err != nil {
			return err
		}
		n.cuts[r[0]+" "+r[1]] = true
	}
	return nil
}

// Heal removes every blackhole route Cut added.
func (n *Net) Heal() error {
	var errs []error
	for _, k := range slices.Sorted(maps.Keys(n.cuts)) {
		ns, dst, _ := strings.Cut(k, " ")
		if err := ip("-n", ns, "route", "del", "blackhole", dst+"/32"); err != nil {
			errs = append(errs, err)
			continue
		}
		delete(n.cuts, k)
	}
	return errors.Join(errs...)
}

// Close deletes the namespaces (and with them the veth pairs) and the
// bridge. It is idempotent.
func (n *Net) Close() {
	for _, ns := range n.nss {
		if err := ip("netns", "del", ns); err != nil {
			n.t.Logf("removing namespace: %v", err)
		}
	}
	n.nss = nil
	if n.bridge != "" {
		_ = ip("link", "del", n.bridge)
		n.bridge = ""
	}
}

// NSNode is a node binary running inside a network namespace.
type NSNode struct {
	Name      string
	Addr      string // its address in the namespace
	Port      int    // its service port
	AdminPort int    // its admin port (metrics), from env's SCC_ADMIN_PORT
	cmd       *exec.Cmd
	done      chan struct{}
}

// StartNSNode runs bin/scc-<role> in namespace ns with env (plus PATH)
// and its output, prefixed with name, to out. It is stopped when t ends.
func StartNSNode(t testing.TB, ns, role, name, addr string, port int, env map[string]string, out io.Writer) *NSNode {
	t.Helper()
	bin := RequireBinaries(t)
	cmd := exec.Command("ip", "netns", "exec", ns, filepath.Join(bin, "scc-"+role))
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	for _, k := range slices.Sorted(maps.Keys(env)) {
		cmd.Env = append(cmd.Env, k+"="+env[k])
	}
	prefix := fmt.Sprintf("%-11s| ", name)
	cmd.Stdout = &prefixWriter{out: out, prefix: prefix}
	cmd.Stderr = &prefixWriter{out: out, prefix: prefix}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s in %s: %v", name, ns, err)
	}
	nd := &NSNode{Name: name, Addr: addr, Port: port, cmd: cmd, done: make(chan struct{})}
	nd.AdminPort, _ = strconv.Atoi(env["SCC_ADMIN_PORT"])
	go func() { // reaps the process; Stop waits for it
		_ = cmd.Wait()
		close(nd.done)
	}()
	t.Cleanup(func() { nd.Stop(10 * time.Second) })
	return nd
}

// MetricsURL returns the node's /metrics URL on its admin port.
func (nd *NSNode) MetricsURL() string {
	return "http://" + net.JoinHostPort(nd.Addr, strconv.Itoa(nd.AdminPort)) + "/metrics"
}

// PID returns the node's process id.
func (nd *NSNode) PID() int { return nd.cmd.Process.Pid }

// WaitReady polls the node's /readyz until it answers 200.
func (nd *NSNode) WaitReady(timeout time.Duration) error {
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}
	url := fmt.Sprintf("http://%s:%d/readyz", nd.Addr, nd.Port)
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-nd.done:
			return fmt.Errorf("%s exited: %v", nd.Name, nd.cmd.ProcessState)
		default:
		}
		resp, err := hc.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready within %v (last error %v)", nd.Name, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop sends SIGTERM to the node's process group, waits up to timeout,
// then SIGKILLs it. It is idempotent.
func (nd *NSNode) Stop(timeout time.Duration) {
	select {
	case <-nd.done:
		return
	default:
	}
	_ = syscall.Kill(-nd.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-nd.done:
		return
	case <-time.After(timeout):
	}
	_ = syscall.Kill(-nd.cmd.Process.Pid, syscall.SIGKILL)
	<-nd.done
}

// prefixWriter prefixes every line written to it.
type prefixWriter struct {
	out    io.Writer
	prefix string
	buf    []byte
}

func (w *prefixWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for {
		i := strings.IndexByte(string(w.buf), '\n')
		if i < 0 {
			break
		}
		_, _ = io.WriteString(w.out, w.prefix+string(w.buf[:i+1]))
		w.buf = w.buf[i+1:]
	}
	return len(p), nil
}
