package k8spods

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sccgo/sccgo/client"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// reconnectBound is the longest a subscriber of a drained frontend may be
// without a connection. A drained frontend closes its clients with 1001,
// after which the Go client waits a random time below Backoff.Initial
// (client.DefaultBackoffInitial, 500 ms) before its first attempt and
// below twice that before its second (full-jitter exponential backoff,
// client/options.go). The Deployment's preStop sleep lets the Service stop
// routing to the draining pod before it closes anyone, so the first
// attempt should land on a ready pod; the bound allows the first two
// attempts' delays (1.5 s) plus 0.5 s for the handshake on a loaded
// two-core machine.
const reconnectBound = client.DefaultBackoffInitial + 2*client.DefaultBackoffInitial + 500*time.Millisecond

func env(t *testing.T, name string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		t.Skipf("%s not set: run by scripts/k8s-pods.sh inside its cluster", name)
	}
	return v
}

// waitFor polls cond every 20 ms until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestClusterDNS resolves the Services the pods find each other by through
// the cluster DNS (CoreDNS at SCC_K8S_PODS_DNS): the state server's and
// the frontends' ClusterIPs and the headless broker Service's pod
// addresses. DNS follows the EndpointSlices with a delay (and CoreDNS
// caches a name that did not exist yet, up to the cache's 30 s), so each
// name is polled until it resolves, for at most 40 s.
func TestClusterDNS(t *testing.T) {
	dns := env(t, "SCC_K8S_PODS_DNS")
	ns := env(t, "SCC_K8S_PODS_NAMESPACE")
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, dns)
	}}
	for _, c := range []struct {
		name string
		min  int
	}{{"scc-state", 1}, {"scc-frontend", 1}, {"scc-broker", 2}} {
		name := c.name + "." + ns + ".svc.cluster.local"
		var addrs []string
		var err error
		start := time.Now()
		deadline := start.Add(40 * time.Second)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			addrs, err = r.LookupHost(ctx, name)
			cancel()
			if err == nil && len(addrs) >= c.min {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %v %v, want at least %d addresses within 40s", name, addrs, err, c.min)
			}
			time.Sleep(250 * time.Millisecond)
		}
		t.Logf("%s: %v (after %v)", name, addrs, time.Since(start).Round(time.Millisecond))
	}
}

// connections reads scc_frontend_connections from a frontend pod's admin
// port; -1 when it cannot.
func connections(podIP string) int {
	// No keep-alive: an idle connection would outlive the test.
	c := http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + net.JoinHostPort(podIP, "8001") + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "scc_frontend_connections "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				return -1
			}
			return int(f)
		}
	}
	return -1
}

func wsURL(host string) string {
	return "ws://" + net.JoinHostPort(host, "8000") + "/socketcluster/"
}

// next waits for a message on sub whose data is want.
func next(t *testing.T, sub *client.Subscription, want string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		m, err := sub.Next(ctx)
		if err != nil {
			t.Fatalf("waiting for %q on %s: %v", want, sub.Channel(), err)
		}
		var got string
		if json.Unmarshal(m.Data, &got) == nil && got == want {
			return
		}
	}
}

// TestAcrossFrontends connects one client through the frontend Service
// and a second straight to the other frontend pod, checks on the pods'
// own connection gauges that the two sit on different frontends, and has
// each receive what the other publishes.
func TestAcrossFrontends(t *testing.T) {
	svc := env(t, "SCC_K8S_PODS_SERVICE")
	pods := strings.Split(env(t, "SCC_K8S_PODS_FRONTENDS"), ",")
	if len(pods) != 2 {
		t.Fatalf("SCC_K8S_PODS_FRONTENDS: want 2 pod IPs, got %q", pods)
	}
	for _, p := range pods {
		if n := connections(p); n != 0 {
			t.Fatalf("frontend %s has %d connections before the test, want 0", p, n)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	a, err := client.Dial(ctx, wsURL(svc), client.Options{})
	if err != nil {
		t.Fatalf("dial the Service %s: %v", svc, err)
	}
	defer a.Close()
	var aPod, bPod string
	waitFor(t, 10*time.Second, "the Service's connection on one frontend pod", func() bool {
		n0, n1 := connections(pods[0]), connections(pods[1])
		switch {
		case n0 == 1 && n1 == 0:
			aPod, bPod = pods[0], pods[1]
		case n0 == 0 && n1 == 1:
			aPod, bPod = pods[1], pods[0]
		default:
			return false
		}
		return true
	})
	t.Logf("client A through the Service %s landed on frontend %s; client B dials frontend %s", svc, aPod, bPod)

	b, err := client.Dial(ctx, wsURL(bPod), client.Options{})
	if err != nil {
		t.Fatalf("dial frontend %s: %v", bPod, err)
	}
	defer b.Close()
	waitFor(t, 10*time.Second, "one connection on each frontend", func() bool {
		return connections(aPod) == 1 && connections(bPod) == 1
	})

	const ch = "k8s-pods"
	subA, err := a.Subscribe(ctx, ch, client.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	subB, err := b.Subscribe(ctx, ch, client.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The brokers learn B's frontend's interest asynchronously; publish
	// until B has seen one, then check the other direction.
	deliveredAB := func() bool {
		if err := a.Publish(ctx, ch, "from-a"); err != nil {
			t.Fatalf("publish through %s: %v", aPod, err)
		}
		select {
		case m := <-subB.C():
			var got string
			return json.Unmarshal(m.Data, &got) == nil && got == "from-a"
		case <-time.After(200 * time.Millisecond):
			return false
		}
	}
	waitFor(t, 10*time.Second, "A's publish (frontend "+aPod+") at B (frontend "+bPod+")", deliveredAB)
	if err := b.Publish(ctx, ch, "from-b"); err != nil {
		t.Fatalf("publish through %s: %v", bPod, err)
	}
	next(t, subA, "from-b")
	t.Logf("messages crossed both ways between frontends %s and %s", aPod, bPod)
}

// TestRollingRestart keeps a subscriber and a publisher connected through
// the frontend Service, reconnecting by themselves, while every frontend
// pod is replaced (kubectl rollout restart). Each time the subscriber's
// connection drops, a deadline poll requires it back within
// reconnectBound; after the rollout it must have been moved at least once
// (every old pod is gone), still hold its subscription, and receive.
func TestRollingRestart(t *testing.T) {
	svc := env(t, "SCC_K8S_PODS_SERVICE")
	kubectl := strings.Fields(env(t, "SCC_K8S_PODS_KUBECTL"))
	ns := env(t, "SCC_K8S_PODS_NAMESPACE")

	var mu sync.Mutex
	var down time.Time // zero while connected
	var outages []time.Duration
	var drops int
	opts := client.Options{
		// SCC_K8S_PODS_NO_RECONNECT=1 is the script's check that this test
		// fails when the subscriber does not come back.
		DisableReconnect: os.Getenv("SCC_K8S_PODS_NO_RECONNECT") == "1",
		OnDisconnect: func(code int, reason string) {
			mu.Lock()
			defer mu.Unlock()
			drops++
			down = time.Now()
		},
		OnConnect: func(info client.ConnectInfo) {
			mu.Lock()
			defer mu.Unlock()
			if !down.IsZero() {
				outages = append(outages, time.Since(down))
				down = time.Time{}
			}
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dctx, dcancel := context.WithTimeout(ctx, 30*time.Second)
	defer dcancel()
	sub, err := client.Dial(dctx, wsURL(svc), opts)
	if err != nil {
		t.Fatalf("dial the Service %s: %v", svc, err)
	}
	defer sub.Close()
	pub, err := client.Dial(dctx, wsURL(svc), client.Options{})
	if err != nil {
		t.Fatalf("dial the Service %s: %v", svc, err)
	}
	defer pub.Close()

	const ch = "k8s-pods-rollout"
	var received, lastSeq int
	var lastAt time.Time
	var longestGap time.Duration
	s, err := sub.Subscribe(dctx, ch, client.SubscribeOptions{Handler: func(m client.Message) {
		seq, _ := strconv.Atoi(string(m.Data))
		now := time.Now()
		mu.Lock()
		defer mu.Unlock()
		received++
		lastSeq = seq
		if !lastAt.IsZero() && now.Sub(lastAt) > longestGap {
			longestGap = now.Sub(lastAt)
		}
		lastAt = now
	}})
	if err != nil {
		t.Fatal(err)
	}

	// The publisher: one message every 50 ms; one that fails while its
	// own connection moves is skipped.
	var wg sync.WaitGroup
	var published int
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for seq := 1; ; seq++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			pctx, pcancel := context.WithTimeout(ctx, time.Second)
			if pub.Publish(pctx, ch, seq) == nil {
				mu.Lock()
				published++
				mu.Unlock()
			}
			pcancel()
		}
	}()
	defer func() { cancel(); wg.Wait() }()
	waitFor(t, 10*time.Second, "the first message through the Service", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return received > 0
	})

	// The deadline poll: whenever the subscriber is down, it must be back
	// within reconnectBound.
	var violation string
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			mu.Lock()
			if !down.IsZero() && time.Since(down) > reconnectBound && violation == "" {
				violation = fmt.Sprintf("subscriber disconnected at %s still not back after %v", down.Format("15:04:05.000"), reconnectBound)
			}
			mu.Unlock()
			time.Sleep(20 * time.Millisecond)
		}
	}()

	start := time.Now()
	run := func(args ...string) {
		t.Helper()
		cmd := exec.CommandContext(ctx, kubectl[0], append(append(kubectl[1:], "-n", ns), args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		t.Logf("kubectl %s: %s", strings.Join(args, " "), strings.TrimSpace(string(out)))
	}
	run("rollout", "restart", "deployment/scc-frontend")
	run("rollout", "status", "deployment/scc-frontend", "--timeout=300s")
	// The Deployment reports complete once the new pods are ready; the
	// last old pod may still be draining its clients.
	hash := newHash(t, kubectl, ns)
	oldGone := time.Now().Add(120 * time.Second)
	for {
		out, err := exec.CommandContext(ctx, kubectl[0], append(append(kubectl[1:], "-n", ns), "get", "pods", "-o", "name",
			"-l", "app.kubernetes.io/component=frontend,pod-template-hash!="+hash)...).Output()
		if err == nil && strings.TrimSpace(string(out)) == "" {
			break
		}
		if time.Now().After(oldGone) {
			t.Fatalf("old frontend pods still there 120s after the rollout: %s (%v)", out, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("rollout done in %v", time.Since(start).Round(time.Millisecond))
	// A subscriber dropped at the end of the rollout has until its bound:
	// wait until it is back or the deadline poll has given up on it.
	waitFor(t, reconnectBound+time.Second, "the subscriber back or past its bound", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return down.IsZero() || violation != ""
	})
	mu.Lock()
	v := violation
	mu.Unlock()
	if v != "" {
		t.Fatal(v)
	}
	mu.Lock()
	after := received
	mu.Unlock()
	waitFor(t, 10*time.Second, "a message after the rollout", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return received > after
	})
	if err := s.Err(); err != nil {
		t.Fatalf("subscription ended: %v", err)
	}

	mu.Lock()
	defer mu.Unlock()
	var longest time.Duration
	for _, o := range outages {
		longest = max(longest, o)
	}
	t.Logf("subscriber: %d drops, outages %v (longest %v, bound %v); %d of %d published received, longest gap between messages %v, last seq %d",
		drops, roundAll(outages), longest.Round(time.Millisecond), reconnectBound, received, published, longestGap.Round(time.Millisecond), lastSeq)
	if violation != "" {
		t.Fatal(violation)
	}
	if drops == 0 {
		t.Fatal("the subscriber was never moved: its frontend pod was not replaced")
	}
	if longest > reconnectBound {
		t.Fatalf("longest outage %v, want at most %v", longest, reconnectBound)
	}
}

// newHash returns the pod-template-hash of the Deployment's current
// ReplicaSet.
func newHash(t *testing.T, kubectl []string, ns string) string {
	t.Helper()
	out, err := exec.Command(kubectl[0], append(append(kubectl[1:], "-n", ns), "get", "rs", "-l", "app.kubernetes.io/component=frontend",
		"-o", `jsonpath={range .items[*]}{.metadata.labels.pod-template-hash} {.metadata.annotations.deployment\.kubernetes\.io/revision}{"\n"}{end}`)...).Output()
	if err != nil {
		t.Fatalf("kubectl get rs: %v", err)
	}
	best, rev := "", -1
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(l)
		if len(f) != 2 {
			continue
		}
		if r, err := strconv.Atoi(f[1]); err == nil && r > rev {
			best, rev = f[0], r
		}
	}
	if best == "" {
		t.Fatalf("no frontend ReplicaSet in %q", out)
	}
	return best
}

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Millisecond)
	}
	return out
}
