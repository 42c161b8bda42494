package chaos_test

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/sccgo/sccgo/chaos"
	"github.com/sccgo/sccgo/internal/clustertest"
)

// nsMetric scrapes one metric from a node in a namespace.
func nsMetric(nd *chaos.NSNode, metric string, labels ...string) float64 {
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}
	s, err := chaos.Scrape(hc, nd.MetricsURL())
	if err != nil {
		return -1
	}
	return s.Sum(metric, labels...)
}

// TestScenario10Partition cuts one frontend off from one broker while
// both stay alive and connected to everything else, holds the partition
// (SCC_CHAOS_PARTITION, default 10s), heals it, and checks that delivery
// resumes on every channel and that nothing is duplicated or reordered.
// What happens meanwhile is measured and reported (docs/guarantees.md,
// "Network partition").
//
// Topology: a bridge in the root namespace holds the state server,
// broker-1 and frontend-1 (localcluster); broker-ns and frontend-ns run
// in their own namespaces attached to the bridge. The partition is a
// blackhole route each way between the two namespaces.
func TestScenario10Partition(t *testing.T) {
	requireChaos(t)
	hold := envDuration(t, "SCC_CHAOS_PARTITION", 10*time.Second)
	rep := chaos.NewReport(t, "10-partition", "^TestScenario10")
	n := chaos.NewNet(t)
	nsF, addrF := n.AddNS("f")
	nsB, addrB := n.AddNS("b")
	c := chaos.StartCluster(t, chaos.Spec{Name: "10-partition", Brokers: 1, Frontends: 1, Host: n.Host})
	rep.Attach(c)
	c.WaitRing(1, 0, 15*time.Second)

	dir, err := chaos.ResultsDir()
	if err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "10-partition-ns.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logf.Close() })
	var seeds string
	for _, p := range c.Procs() {
		if seeds != "" {
			seeds += ","
		}
		seeds += net.JoinHostPort(n.Host, strconv.Itoa(p.GossipPort))
	}
	stateHost, statePort, _ := net.SplitHostPort(c.StateAddr())
	env := func(id, addr string) map[string]string {
		e := chaos.DefaultEnv()
		for k, v := range map[string]string{
			"SCC_AUTH_KEY": chaos.AuthKey, "SCC_INSTANCE_ID": id, "SCC_INSTANCE_IP": addr,
			"SCC_GOSSIP_BIND": addr, "SCC_GOSSIP_PORT": "7946", "SCC_GOSSIP_SEEDS": seeds,
			"SCC_STATE_SERVER_HOST": stateHost, "SCC_STATE_SERVER_PORT": statePort,
		} {
			e[k] = v
		}
		return e
	}
	be := env("broker-ns", addrB)
	be["SCC_BROKER_HOST"], be["SCC_BROKER_SERVER_PORT"], be["SCC_ADMIN_PORT"] = addrB, "8888", "8889"
	broker := chaos.StartNSNode(t, nsB, "broker", "broker-ns", addrB, 8888, be, logf)
	if err := broker.WaitReady(30 * time.Second); err != nil {
		rep.Fatalf("broker in a namespace: %v", err)
	}
	v := c.WaitRing(2, 0, 20*time.Second)
	fe := env("frontend-ns", addrF)
	fe["SCC_FRONTEND_HOST"], fe["SOCKETCLUSTER_PORT"], fe["SCC_ADMIN_PORT"] = addrF, "8000", "8001"
	front := chaos.StartNSNode(t, nsF, "frontend", "frontend-ns", addrF, 8000, fe, logf)
	if err := front.WaitReady(30 * time.Second); err != nil {
		rep.Fatalf("frontend in a namespace: %v", err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for nsMetric(front, "scc_frontend_ring_version") != float64(v) {
		if time.Now().After(deadline) {
			rep.Fatalf("frontend-ns never took ring version %d", v)
		}
		time.Sleep(50 * time.Millisecond)
	}

	nsURL := fmt.Sprintf("ws://%s:8000/socketcluster/", addrF)
	tr := startSteady(t, rep, clustertest.TrafficOptions{
		URLs: []string{c.WSURL("frontend-1"), nsURL}, Channels: 200, Subscribers: 4, Publishers: 2,
		Interval: 2 * time.Millisecond,
	})
	before := tr.Checkpoint(10 * time.Second)
	requireClean(rep, "before the partition", before)

	// The partition.
	drops0 := nsMetric(front, routeDrops)
	cut := time.Now()
	if err := n.Cut(nsF, addrF, nsB, addrB); err != nil {
		rep.Fatalf("cutting frontend-ns from broker-ns: %v", err)
	}
	rep.Figure("partition_s", hold.Seconds())
	rep.Notef("partition at %s", cut.Format("15:04:05.000"))
	type sample struct {
		At        float64 `json:"t_s"`
		LinksUp   float64 `json:"frontend_ns_links_up"`
		Drops     float64 `json:"frontend_ns_route_drops"`
		Ring      uint64  `json:"state_ring_version"`
		RingSize  int     `json:"state_ring_brokers"`
		FrontRing float64 `json:"frontend_ns_ring_version"`
	}
	var samples []sample
	for time.Since(cut) < hold {
		s := sample{At: time.Since(cut).Round(100 * time.Millisecond).Seconds(),
			LinksUp: nsMetric(front, "scc_frontend_broker_links_up"),
			Drops:   nsMetric(front, routeDrops) - drops0, FrontRing: nsMetric(front, "scc_frontend_ring_version")}
		if st, err := c.Status(); err == nil {
			s.Ring, s.RingSize = st.RingVersion(), len(st.RingBrokers())
		}
		samples = append(samples, s)
		time.Sleep(min(time.Second, time.Until(cut.Add(hold))))
	}
	rep.Detail("during", samples)
	// Does every channel still deliver somewhere?
	_, flowing := tr.WaitFlowing(time.Now(), 2*time.Second)
	rep.Figure("all_channels_flowing_end", flowing)
	rep.Notef("flowing checked at %s: %v", time.Now().Format("15:04:05.000"), flowing)
	during := tr.Checkpoint(lossySettle)
	rep.Figure("lost_during", during.Lost-before.Lost)
	rep.Figure("streams_with_loss_during", len(during.Streams)+during.MoreStreams)
	rep.Figure("expected_during", during.Expected-before.Expected)
	rep.Figure("route_drops_during", nsMetric(front, routeDrops)-drops0)
	if ok, failed := tr.Published(); true {
		rep.Figure("publishes_ok_failed", []int64{ok, failed})
	}
	requireOrdered(rep, "during the partition", during)

	// Heal.
	healed := time.Now()
	if err := n.Heal(); err != nil {
		rep.Fatalf("healing: %v", err)
	}
	rep.Notef("healed at %s", healed.Format("15:04:05.000"))
	took, ok := tr.WaitFlowing(healed, 15*time.Second)
	if !ok {
		rep.Fatalf("delivery did not resume on every channel within 15s of healing the partition")
	}
	rep.Recovery(took)
	if took > 5*time.Second {
		rep.Failf("delivery resumed %v after the heal, want within 5s", took)
	}
	afterHeal := tr.Checkpoint(lossySettle)
	time.Sleep(2 * time.Second)
	r := tr.Stop(10 * time.Second)
	rep.Check(r)
	requireOrdered(rep, "partition and heal", r)
	rep.Figure("lost_after_heal", r.Lost-afterHeal.Lost)
	if r.Lost != afterHeal.Lost {
		rep.Failf("%d deliveries were lost after the partition healed and delivery resumed", r.Lost-afterHeal.Lost)
	}
	if st, err := c.Status(); err == nil {
		rep.Figure("ring_versions", []uint64{v, st.RingVersion()})
	}
	rep.Figure("frontend_ns_route_drops_by_reason", nsDropsByReason(front))
	nsCounters := map[string]float64{}
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}
	for _, nd := range []*chaos.NSNode{front, broker} {
		if s, err := chaos.Scrape(hc, nd.MetricsURL()); err == nil {
			chaos.AddCounters(nsCounters, nd.Name, s)
		}
	}
	rep.Detail("ns_counters", nsCounters)
}

func nsDropsByReason(nd *chaos.NSNode) map[string]float64 {
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}
	s, err := chaos.Scrape(hc, nd.MetricsURL())
	if err != nil {
		return nil
	}
	out := map[string]float64{}
	for k, v := range s.ByLabel(routeDrops, "reason") {
		if v > 0 {
			out[k] = v
		}
	}
	return out
}
