package chaos_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sccgo/sccgo/bench"
	"github.com/sccgo/sccgo/chaos"
	"github.com/sccgo/sccgo/client"
	"github.com/sccgo/sccgo/internal/clustertest"
	"github.com/sccgo/sccgo/internal/localcluster"
)

// TestScenario20BrokerKillHistory: kill -9 of a broker with history on
// every channel (replicated to each channel's standby): delivery on every
// channel within 2s and 0 lost, 0 duplicated, 0 reordered per publisher
// and channel. Frontends re-send what the dead broker had not
// acknowledged and fetch from the standby what it had not delivered.
func TestScenario20BrokerKillHistory(t *testing.T) {
	requireChaos(t)
	rep := chaos.NewReport(t, "20-broker-kill-history", "^TestScenario20")
	env := chaos.DefaultEnv()
	env["SCC_HISTORY_SIZE"] = "2000"
	env["SCC_HISTORY_TTL"] = "5m"
	c := chaos.StartCluster(t, chaos.Spec{Name: "20-broker-kill-history", Brokers: 3, Frontends: 2, Env: env})
	rep.Attach(c)
	v := c.WaitRing(3, 0, 15*time.Second)
	o := steady(c.FrontendURLs(), nil)
	o.Channels = 100
	tr := startSteady(t, rep, o)
	killRecovery(t, rep, c, tr, "broker-1", nil)
	v2 := c.WaitRing(2, v, 10*time.Second)
	rep.Figure("ring_versions", []uint64{v, v2})
	if _, ok := tr.WaitFlowing(time.Now().Add(300*time.Millisecond), 10*time.Second); !ok {
		rep.Failf("messages did not flow after the ring without the dead broker was committed")
	}
	r := tr.Stop(5 * time.Second)
	rep.Check(r)
	requireClean(rep, "broker kill -9 with history", r)
	rep.Figure("resent", c.SumFrontends("scc_frontend_resent_total"))
	rep.Figure("gaps_recovered", c.SumFrontends("scc_frontend_history_recoveries_total", "result", "recovered"))
	lostHistory := c.SumFrontends("scc_frontend_history_recoveries_total", "result", "epoch")
	rep.Figure("channels_that_lost_history", lostHistory)
	if lostHistory != 0 {
		rep.Failf("%v times a channel continued under a new epoch: its history was lost", lostHistory)
	}
	rep.Figure("route_drops_by_reason", routeDropsByReason(c))
}

// historyEnv is every node's environment with history on every channel,
// replicated to each channel's standby.
func historyEnv() map[string]string {
	env := chaos.DefaultEnv()
	env["SCC_HISTORY_SIZE"] = "2000"
	env["SCC_HISTORY_TTL"] = "5m"
	return env
}

// epochChanges is how many times the frontends saw a channel continue
// under a new epoch: its history was lost.
func epochChanges(c *chaos.Cluster) float64 {
	return c.SumFrontends("scc_frontend_history_recoveries_total", "result", "epoch")
}

// requireSameEpochs fails the scenario if any channel changed epoch.
func requireSameEpochs(rep *chaos.Report, c *chaos.Cluster, what string) {
	lost := epochChanges(c)
	rep.Figure("channels_that_lost_history", lost)
	if lost != 0 {
		rep.Failf("%s: %v times a channel continued under a new epoch: its history was lost", what, lost)
	}
}

// TestScenario21StateDownBrokerKillHistory: with history on, kill -9 of
// the state server, then kill -9 of a broker while it is down: nodes
// route around the broker by gossip alone, its channels' standbys hold
// their histories, and delivery resumes on every channel within 2s with
// 0 lost, 0 duplicated, 0 reordered and no channel changing epoch.
func TestScenario21StateDownBrokerKillHistory(t *testing.T) {
	requireChaos(t)
	rep := chaos.NewReport(t, "21-state-down-broker-kill-history", "^TestScenario21")
	c := chaos.StartCluster(t, chaos.Spec{Name: "21-state-down-broker-kill-history", Brokers: 3, Frontends: 2, Env: historyEnv()})
	rep.Attach(c)
	v := c.WaitRing(3, 0, 15*time.Second)
	o := steady(c.FrontendURLs(), nil)
	o.Channels = 100
	tr := startSteady(t, rep, o)

	if err := c.KillState(); err != nil {
		rep.Fatalf("SIGKILL state: %v", err)
	}
	// Let the frontends notice the state link is gone.
	if _, ok := tr.WaitFlowing(time.Now().Add(time.Second), 5*time.Second); !ok {
		rep.Fatalf("traffic stalled when the state server died")
	}
	killRecovery(t, rep, c, tr, "broker-2", nil)
	rep.Figure("ring_version", v)
	rep.Figure("frontend_ring_versions_during", frontendRingVersions(c))
	if _, ok := tr.WaitFlowing(time.Now().Add(300*time.Millisecond), 10*time.Second); !ok {
		rep.Failf("messages stopped flowing after routing around the dead broker")
	}
	r := tr.Stop(5 * time.Second)
	rep.Check(r)
	requireClean(rep, "state down, broker kill -9 with history", r)
	rep.Figure("resent", c.SumFrontends("scc_frontend_resent_total"))
	rep.Figure("gaps_recovered", c.SumFrontends("scc_frontend_history_recoveries_total", "result", "recovered"))
	rep.Figure("fallback_ring_changes", c.SumFrontends("scc_frontend_ring_changes_total", "source", "fallback"))
	requireSameEpochs(rep, c, "state down, broker kill -9")
	rep.Figure("route_drops_by_reason", routeDropsByReason(c))
}

// TestScenario22OwnerStandbyKill: with history on and 4 brokers, kill -9
// of two brokers at once. The channels whose owner and standby were both
// among them lose their history: each continues under a new epoch, which
// the frontends count and a subscriber sees. Every other channel keeps
// its epoch and duplicates or reorders nothing; what it loses (publishes
// held for a dead owner longer than SCC_BROKER_BACKLOG_MAX_AGE while the
// ring drops the two brokers) is counted by the frontends, and the whole
// loss is bounded by the traffic of the recovery window.
func TestScenario22OwnerStandbyKill(t *testing.T) {
	requireChaos(t)
	rep := chaos.NewReport(t, "22-owner-standby-kill", "^TestScenario22")
	c := chaos.StartCluster(t, chaos.Spec{Name: "22-owner-standby-kill", Brokers: 4, Frontends: 2, Env: historyEnv()})
	rep.Attach(c)
	v := c.WaitRing(4, 0, 15*time.Second)
	st, err := c.Status()
	if err != nil {
		rep.Fatalf("reading the ring: %v", err)
	}
	rg := st.RingOf()
	victims := []string{"broker-1", "broker-2"}
	o := steady(c.FrontendURLs(), nil)
	o.Channels = 100
	started := time.Now()
	tr := startSteady(t, rep, o)

	// Which channels lose both copies of their history, as every node
	// hashes them.
	affected := map[string]bool{}
	for i := range o.Channels {
		ch := fmt.Sprintf("ch-%d", i)
		owner := rg.OwnerID(ch)
		if slices.Contains(victims, owner) && slices.Contains(victims, rg.Broker(rg.StandbyIndex(ch, owner)).ID) {
			affected[ch] = true
		}
	}
	rep.Figure("channels", o.Channels)
	rep.Figure("channels_owner_and_standby_killed", len(affected))
	if len(affected) == 0 {
		rep.Fatalf("no channel has both its owner and its standby among %v in ring %d", victims, v)
	}

	// A watcher subscribed to every channel on a surviving frontend, to
	// see the epochs clients are told.
	w, err := client.Dial(ctxTimeout(t, 10*time.Second), c.WSURL("frontend-1"), client.Options{})
	if err != nil {
		rep.Fatalf("dialing the watcher: %v", err)
	}
	defer w.Close()
	subs := map[string]*client.Subscription{}
	for i := range o.Channels {
		ch := fmt.Sprintf("ch-%d", i)
		s, err := w.Subscribe(ctxTimeout(t, 10*time.Second), ch, client.SubscribeOptions{Handler: func(client.Message) {}})
		if err != nil {
			rep.Fatalf("watcher subscribing %s: %v", ch, err)
		}
		subs[ch] = s
	}
	before := map[string]string{}
	for ch, s := range subs {
		if _, before[ch] = s.Position(); before[ch] == "" {
			rep.Fatalf("the watcher was told no epoch for %s: the channel keeps no history", ch)
		}
	}
	epochs0 := epochChanges(c)

	killed := time.Now()
	if err := c.KillBrokers(victims...); err != nil {
		rep.Fatalf("SIGKILL %v: %v", victims, err)
	}
	// Two brokers leave the ring at once: no 2s bound is promised here.
	took, ok := tr.WaitFlowing(killed, 40*time.Second)
	if !ok {
		rep.Fatalf("delivery did not resume on every channel within 40s of killing %v", victims)
	}
	rep.Recovery(took)
	t.Logf("delivery resumed on every channel %v after killing %v", took, victims)
	v2 := c.WaitRing(2, v, 20*time.Second)
	rep.Figure("ring_versions", []uint64{v, v2})
	// Where the time goes: the reshards that took the brokers out and
	// the frontends' waits in them.
	rep.Figure("state_reshards_by_result", nonZero(mustMetrics(c, "state").ByLabel("scc_state_reshards_total", "result")))
	events := map[string]float64{}
	for _, name := range c.Names(localcluster.RoleFrontend) {
		for k, n := range nonZero(mustMetrics(c, name).ByLabel("scc_frontend_reshard_events_total", "phase")) {
			events[k] += n
		}
	}
	rep.Figure("frontend_reshard_events", events)
	if _, ok := tr.WaitFlowing(time.Now().Add(300*time.Millisecond), 10*time.Second); !ok {
		rep.Failf("messages did not flow after the ring without the dead brokers was committed")
	}
	r := tr.Stop(lossySettle)
	rep.Check(r)

	// Elsewhere nothing is duplicated or reordered, and what is lost is
	// counted.
	var lostAffected, lostElsewhere int64
	for _, s := range r.Streams {
		if affected[s.Channel] {
			lostAffected += s.Lost
			continue
		}
		lostElsewhere += s.Lost
		if s.Duplicated != 0 || s.OutOfOrder != 0 || s.Unexpected != 0 {
			rep.Failf("channel %s kept a copy of its history and duplicated or reordered: %+v", s.Channel, s)
		}
	}
	if r.MoreStreams > 0 {
		rep.Notef("%d more streams had trouble than the check lists", r.MoreStreams)
	}
	rep.Figure("lost_on_affected_channels", lostAffected)
	rep.Figure("lost_elsewhere", lostElsewhere)
	drops := c.SumFrontends(routeDrops)
	if lostElsewhere > 0 && drops == 0 {
		rep.Failf("%d deliveries were lost on channels with a surviving copy and no frontend counted a drop", lostElsewhere)
	}
	lossCounted(rep, c, clusterResult{r.Expected, r.Lost, time.Since(started).Seconds()}, took)
	// A frontend counts a dropped publish once, the check every
	// subscriber's lost delivery of it.
	if uncounted := r.Lost - int64(drops)*int64(o.Subscribers); uncounted > 0 {
		rep.Failf("%d lost deliveries are more than the %v dropped publishes the frontends counted reach (%d subscribers each)", r.Lost, drops, o.Subscribers)
	}

	// Every affected channel, and no other, continues under a new epoch.
	var changed, wrong int
	for ch, s := range subs {
		_, now := s.Position()
		switch {
		case affected[ch] && now == before[ch]:
			wrong++
			rep.Failf("channel %s lost its history but its subscriber still sees epoch %s", ch, now)
		case !affected[ch] && now != before[ch]:
			wrong++
			rep.Failf("channel %s kept a copy of its history but changed epoch %s → %s", ch, before[ch], now)
		case now != before[ch]:
			changed++
		}
	}
	rep.Figure("watcher_epoch_changes", changed)
	lost := epochChanges(c) - epochs0
	rep.Figure("frontend_epoch_changes", lost)
	if lost < float64(len(affected)) {
		rep.Failf("frontends counted %v channels that lost their history, want at least %d", lost, len(affected))
	}
	rep.Figure("resent", c.SumFrontends("scc_frontend_resent_total"))
}

// TestScenario23ScaleOutInHistory: with history on, 2→3 brokers under
// load, then a graceful scale-in 3→2 (SIGTERM): the new owner of a moved
// channel gets its history from the old one before it numbers anything,
// the leaving broker's channels go to standbys that hold them, and across
// both 0 are lost, duplicated or reordered and no channel changes epoch.
func TestScenario23ScaleOutInHistory(t *testing.T) {
	requireChaos(t)
	rep := chaos.NewReport(t, "23-scale-out-in-history", "^TestScenario23")
	c := chaos.StartCluster(t, chaos.Spec{Name: "23-scale-out-in-history", Brokers: 2, Frontends: 2, Env: historyEnv()})
	rep.Attach(c)
	v := c.WaitRing(2, 0, 15*time.Second)
	o := steady(c.FrontendURLs(), nil)
	o.Channels = 100
	tr := startSteady(t, rep, o)

	added := time.Now()
	name, err := c.AddBroker(ctxTimeout(t, 30*time.Second))
	if err != nil {
		rep.Fatalf("adding a broker: %v", err)
	}
	v2 := c.WaitRing(3, v, 20*time.Second)
	rep.Figure("scale_out_ms", ms(time.Since(added)))
	if _, ok := tr.WaitFlowing(time.Now().Add(500*time.Millisecond), 10*time.Second); !ok {
		rep.Fatalf("messages did not flow after the scale-out")
	}
	out := tr.Checkpoint(10 * time.Second)
	rep.Figure("lost_scale_out", out.Lost)
	requireClean(rep, "scale-out 2→3 with history", out)
	rep.Figure("epoch_changes_scale_out", epochChanges(c))
	rep.Figure("forwarded_scale_out", sumBrokers(c, "scc_broker_forwarded_total"))

	v3 := scaleIn(t, rep, c, tr, "broker-1", v2)
	r := tr.Stop(10 * time.Second)
	rep.Check(r)
	requireClean(rep, "scale-out 2→3 and scale-in 3→2 with history", r)
	rep.Figure("ring_versions", []uint64{v, v2, v3})
	rep.Figure("added", name)
	rep.Figure("resent", c.SumFrontends("scc_frontend_resent_total"))
	rep.Figure("gaps_recovered", c.SumFrontends("scc_frontend_history_recoveries_total", "result", "recovered"))
	requireSameEpochs(rep, c, "scale-out and scale-in with history")
	rep.Figure("route_drops", c.SumFrontends(routeDrops))
	rep.Figure("ring_floor_waits", sumBrokers(c, "scc_broker_ring_floor_waits_total", "result", "ok"))
	rep.Figure("stale_replicas", sumBrokers(c, "scc_broker_replicas_received_total", "kind", "stale"))
}

// sumBrokers sums a metric over every running broker.
func sumBrokers(c *chaos.Cluster, metric string, labels ...string) float64 {
	var sum float64
	for _, name := range c.Names(localcluster.RoleBroker) {
		if s, err := c.Metrics(name); err == nil {
			sum += s.Sum(metric, labels...)
		}
	}
	return sum
}

// recovering is one subscription of scenario 24 and what it received:
// the publishers send 1, 2, 3, … on every channel.
type recovering struct {
	ch      string
	sub     *client.Subscription
	next    atomic.Int64 // the number expected next
	skipped atomic.Int64 // numbers jumped over
	dup     atomic.Int64 // numbers received again (or unreadable)
	// first is the first unexpected message, "got N want M".
	first atomic.Pointer[string]
}

// deliver runs on the client's reader, in order.
func (r *recovering) deliver(m client.Message) {
	n, err := strconv.ParseInt(string(m.Data), 10, 64)
	want := r.next.Load()
	if err != nil || n != want {
		msg := fmt.Sprintf("got %s, want %d", m.Data, want)
		r.first.CompareAndSwap(nil, &msg)
	}
	switch {
	case err != nil || n < want:
		r.dup.Add(1)
	default:
		r.skipped.Add(n - want)
		r.next.Store(n + 1)
	}
}

// check is the subscription's delivery check against total publications.
func (r *recovering) check(total int64) bench.CheckResult {
	got := r.next.Load() - 1
	lost := r.skipped.Load() + max(0, total-got)
	return bench.CheckResult{Expected: total, Received: got - r.skipped.Load(), Lost: lost, Duplicated: r.dup.Load()}
}

// TestScenario24FrontendKillRecover: with history on, 2 frontends behind
// a TCP switch proxy (a load balancer). Go clients connected through it
// to frontend A hold a few hundred subscriptions while publishers on
// frontend B publish 1, 2, 3, … on each channel. Frontend A is killed
// (-9) and, a second later, the proxy switched to B: the clients
// reconnect by themselves, resubscribe asking to recover, and every
// subscription gets every message exactly once, in order, its recovery
// reported complete. Half the channels are held on B by another socket
// when the clients arrive, half are not.
func TestScenario24FrontendKillRecover(t *testing.T) {
	requireChaos(t)
	const (
		nClients   = 50
		perClient  = 8 // subscriptions per client
		nChannels  = 40
		nPubs      = 4 // publishers, each with its share of the channels
		total      = 400
		killAt     = 50                   // publications per channel before the kill
		pubPause   = 5 * time.Millisecond // between two rounds of a publisher
		catchUpFor = 20 * time.Second
		// balancerDelay is how long the proxy keeps sending connections
		// to the dead frontend.
		balancerDelay = time.Second
	)
	rep := chaos.NewReport(t, "24-frontend-kill-recover", "^TestScenario24")
	c := chaos.StartCluster(t, chaos.Spec{Name: "24-frontend-kill-recover", Brokers: 2, Frontends: 2, Env: historyEnv()})
	rep.Attach(c)
	c.WaitRing(2, 0, 15*time.Second)
	a, b := c.WSURL("frontend-1"), c.WSURL("frontend-2")
	proxy := clustertest.StartSwitchProxy(t, hostPort(t, a))
	chans := channels("room-", nChannels)
	ctx := ctxTimeout(t, 2*time.Minute)

	// A socket on B holds the even channels there.
	holder, err := client.Dial(ctx, b, client.Options{})
	if err != nil {
		rep.Fatalf("dialing the holder: %v", err)
	}
	defer holder.Close()
	for i := 0; i < nChannels; i += 2 {
		if _, err := holder.Subscribe(ctx, chans[i], client.SubscribeOptions{Handler: func(client.Message) {}}); err != nil {
			rep.Fatalf("holder subscribing %s: %v", chans[i], err)
		}
	}

	var subs []*recovering
	var clients []*client.Client
	defer func() {
		for _, cl := range clients {
			cl.Close()
		}
	}()
	for i := range nClients {
		cl, err := client.Dial(ctx, proxy.URL(), client.Options{
			Backoff: client.Backoff{Initial: 50 * time.Millisecond, Max: 500 * time.Millisecond},
		})
		if err != nil {
			rep.Fatalf("client %d dialing through the proxy: %v", i, err)
		}
		clients = append(clients, cl)
		for k := range perClient {
			r := &recovering{ch: chans[(i*perClient+k)%nChannels]}
			r.next.Store(1)
			if r.sub, err = cl.Subscribe(ctx, r.ch, client.SubscribeOptions{Handler: r.deliver}); err != nil {
				rep.Fatalf("client %d subscribing %s: %v", i, r.ch, err)
			}
			subs = append(subs, r)
		}
	}
	rep.Figure("subscriptions", len(subs))
	rep.Figure("publications_per_channel", total)

	// The publishers, on B.
	var sent [nPubs]atomic.Int64
	var pubErr atomic.Pointer[string]
	var pubWG sync.WaitGroup
	for p := range nPubs {
		pc, err := client.Dial(ctx, b, client.Options{})
		if err != nil {
			rep.Fatalf("dialing publisher %d: %v", p, err)
		}
		defer pc.Close()
		pubWG.Go(func() {
			for n := 1; n <= total; n++ {
				for i := p; i < nChannels; i += nPubs {
					if err := pc.Publish(ctx, chans[i], n); err != nil {
						msg := fmt.Sprintf("publisher %d, %s, %d: %v", p, chans[i], n, err)
						pubErr.CompareAndSwap(nil, &msg)
						return
					}
				}
				sent[p].Store(int64(n))
				time.Sleep(pubPause)
			}
		})
	}
	minSent := func() int64 {
		m := int64(total)
		for p := range nPubs {
			m = min(m, sent[p].Load())
		}
		return m
	}
	started := time.Now().Add(30 * time.Second)
	for minSent() < killAt && pubErr.Load() == nil {
		if time.Now().After(started) {
			rep.Fatalf("publishing did not reach %d per channel in 30s (at %d)", killAt, minSent())
		}
		time.Sleep(5 * time.Millisecond)
	}

	killed := time.Now()
	if err := c.KillFrontend("frontend-1"); err != nil {
		rep.Fatalf("SIGKILL frontend-1: %v", err)
	}
	rep.Figure("sent_per_channel_at_kill", minSent())
	// The balancer takes a while to notice: until then the clients'
	// reconnects fail and they miss more.
	time.Sleep(balancerDelay)
	proxy.Switch(hostPort(t, b))
	rep.Figure("sent_per_channel_at_switch", minSent())
	// Every subscription resubscribed on B and was told its recovery is
	// complete.
	var recoveredAfter time.Duration
	deadline := time.Now().Add(catchUpFor)
	for {
		n := 0
		for _, r := range subs {
			if rc := r.sub.Recovery(); rc.Asked && rc.Recovered {
				n++
			}
		}
		if n == len(subs) {
			recoveredAfter = time.Since(killed)
			break
		}
		if time.Now().After(deadline) {
			rep.Failf("%d of %d subscriptions recovered within %v of the kill", n, len(subs), catchUpFor)
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if recoveredAfter > 0 {
		rep.Recovery(recoveredAfter)
		rep.Figure("all_recovered_ms", ms(recoveredAfter))
	}
	pubWG.Wait()
	if p := pubErr.Load(); p != nil {
		rep.Fatalf("a publish on the surviving frontend failed: %s", *p)
	}
	// Then every subscription has every message.
	deadline = time.Now().Add(catchUpFor)
	for {
		behind := 0
		for _, r := range subs {
			if r.next.Load() <= total {
				behind++
			}
		}
		if behind == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	rep.Figure("caught_up_after_kill_ms", ms(time.Since(killed)))

	var res bench.CheckResult
	var notRecovered, wrong int
	reasons := map[string]int{}
	for _, r := range subs {
		cr := r.check(total)
		res.Merge(cr)
		rc := r.sub.Recovery()
		if !rc.Asked || !rc.Recovered || r.sub.RecoveryFailures() != 0 || r.sub.Gaps() != 0 {
			notRecovered++
			reasons[rc.Reason]++
		}
		if cr.Lost != 0 || cr.Duplicated != 0 {
			if wrong++; wrong <= 5 {
				first := ""
				if p := r.first.Load(); p != nil {
					first = *p
				}
				rep.Failf("%s: %d of %d received, %d lost, %d twice (first: %s), recovery %+v", r.ch, cr.Received, total, cr.Lost, cr.Duplicated, first, rc)
			}
		}
	}
	rep.Check(res)
	rep.Figure("subscriptions_wrong", wrong)
	rep.Figure("subscriptions_not_recovered", notRecovered)
	if notRecovered > 0 {
		rep.Failf("%d of %d subscriptions did not report a complete recovery (reasons %v)", notRecovered, len(subs), reasons)
	}
	rep.Figure("frontend_b_subscribes_by_result", nonZero(mustMetrics(c, "frontend-2").ByLabel("scc_frontend_recoveries_total", "result")))
	rep.Figure("publications_replayed", c.MetricOf("frontend-2", "scc_frontend_recovered_publications_total"))
}

// mustMetrics scrapes the named process, or returns no samples.
func mustMetrics(c *chaos.Cluster, name string) chaos.Samples {
	s, _ := c.Metrics(name)
	return s
}

// nonZero returns m without its zero entries.
func nonZero(m map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range m {
		if v != 0 {
			out[k] = v
		}
	}
	return out
}

// TestScenario25BenchRecoveryBrokerKill: with history on, the real
// scc-bench runs against both frontends and cuts a tenth of its
// subscriber connections every 500 ms (-drop-every): they reconnect,
// resubscribe and recover what they missed. During the run a broker is
// killed (-9). The bench's own check over every publisher and channel
// must find 0 lost, 0 duplicated, 0 out of order, with cuts made and
// recovered.
func TestScenario25BenchRecoveryBrokerKill(t *testing.T) {
	requireChaos(t)
	const victim = "broker-1"
	rep := chaos.NewReport(t, "25-bench-recovery-broker-kill", "^TestScenario25")
	bin := chaos.RequireBinaries(t)
	c := chaos.StartCluster(t, chaos.Spec{Name: "25-bench-recovery-broker-kill", Brokers: 3, Frontends: 2, Env: historyEnv()})
	rep.Attach(c)
	v := c.WaitRing(3, 0, 15*time.Second)

	dir := t.TempDir()
	out := filepath.Join(dir, "bench.json")
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctxTimeout(t, time.Minute), filepath.Join(bin, "scc-bench"), "fanout",
		"-urls", strings.Join(c.FrontendURLs(), ","),
		"-subs", "100", "-channels", "50", "-k", "2", "-pubs", "4", "-rate", "1000",
		"-warmup", "1s", "-duration", "8s", "-drain", "3s",
		"-drop-every", "500ms", "-drop-fraction", "0.1",
		"-json", out, "-quiet")
	cmd.Stderr = &stderr
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		rep.Fatalf("starting scc-bench: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	// Kill once the bench's subscribers have been cut and recovered a
	// few times, in the middle of its measured window.
	recovered := func() float64 { return c.SumFrontends("scc_frontend_recoveries_total", "result", "recovered") }
	deadline := time.Now().Add(20 * time.Second)
	for recovered() < 10 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	rep.Figure("recovered_before_kill", recovered())
	time.Sleep(2 * time.Second)
	if err := c.StopBroker(victim, false); err != nil {
		rep.Fatalf("SIGKILL %s: %v", victim, err)
	}
	v2 := c.WaitRing(2, v, 15*time.Second)
	rep.Figure("ring_versions", []uint64{v, v2})

	runErr := <-exited
	b, err := os.ReadFile(out)
	if err != nil {
		rep.Fatalf("scc-bench wrote no result (%v): %v\n%s", runErr, err, stderr.String())
	}
	var res bench.Result
	if err := json.Unmarshal(b, &res); err != nil {
		rep.Fatalf("reading scc-bench's result: %v", err)
	}
	rep.Check(res.Check)
	rep.Figure("bench_exit", exitCode(runErr))
	rep.Figure("connections_cut", res.Drops)
	rep.Figure("resubscribes_recovered", res.Recovered)
	rep.Figure("resubscribes_not_recovered", res.RecoveryFailed)
	rep.Figure("published", res.Published)
	rep.Figure("publish_errors", res.PublishErrors)
	rep.Figure("disconnects", res.Disconnects)
	rep.Figure("publications_replayed", c.SumFrontends("scc_frontend_recovered_publications_total"))
	rep.Figure("frontend_subscribes_by_result", nonZero(frontendRecoveries(c)))
	requireClean(rep, "scc-bench -drop-every with a broker kill -9", res.Check)
	switch {
	case res.Drops == 0:
		rep.Failf("scc-bench cut no connection: the drops did not run")
	case res.Recovered == 0:
		rep.Failf("scc-bench cut %d connections and none of their resubscribes recovered", res.Drops)
	}
	if res.RecoveryFailed != 0 {
		rep.Failf("%d resubscribes were told they could not recover", res.RecoveryFailed)
	}
	if runErr != nil {
		rep.Failf("scc-bench: %v\n%s", runErr, stderr.String())
	}
	requireSameEpochs(rep, c, "scc-bench -drop-every with a broker kill -9")
}

// frontendRecoveries sums scc_frontend_recoveries_total by result over
// the running frontends.
func frontendRecoveries(c *chaos.Cluster) map[string]float64 {
	sum := map[string]float64{}
	for _, name := range c.Names(localcluster.RoleFrontend) {
		for k, n := range mustMetrics(c, name).ByLabel("scc_frontend_recoveries_total", "result") {
			sum[k] += n
		}
	}
	return sum
}

// exitCode is a process's exit status (0 for no error, -1 when it did
// not run to an exit).
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		return ee.ExitCode()
	}
	return -1
}
