package multiproc

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/sccgo/sccgo/broker"
	"github.com/sccgo/sccgo/chaos"
	"github.com/sccgo/sccgo/client"
	"github.com/sccgo/sccgo/internal/clustertest"
	"github.com/sccgo/sccgo/internal/localcluster"
	"github.com/sccgo/sccgo/protocol"
)

const (
	// stormMembers join the channel at once, from stormProcs client
	// processes; stormWatchers are there before the storm.
	stormMembers  = 5000
	stormProcs    = 2
	stormWatchers = 4
	stormChannel  = "room:storm"
)

// stormEvents is what one watcher saw of the storm's join/leave events.
type stormEvents struct {
	events, joins, leaves, omitted, maxEntries int
	last                                       protocol.PresenceEvent
	dropped                                    uint64
}

// TestPresenceStorm has 5k members join one presence channel within
// about a second, on a cluster of real processes (a state server, one
// broker, two frontends) with the default event interval and cap:
// every member subscribes to the channel and to its join/leave events,
// as the chat example of docs/presence.md does. The sockets are opened
// and handshaken beforehand by two client processes (each a few
// thousand sockets from its own 127.0.0.x source addresses), then all
// subscribe at once. Every event any subscriber receives lists at most
// the cap of joins and leaves, no subscriber gets more than one event
// per interval, the watchers' events account for every join exactly (listed
// or omitted), and no socket is closed, as a slow consumer or otherwise.
func TestPresenceStorm(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes and 5k sockets")
	}
	interval := broker.DefaultPresenceEventInterval
	limit := broker.DefaultPresenceEventMaxMembers
	rules := filepath.Join(t.TempDir(), "channels.yaml")
	if err := os.WriteFile(rules, []byte("rules:\n  - match: \"room:*\"\n    subscribe: anyone\n    publish: nobody\n    presence: true\n    join_leave: true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := &logBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("cluster output (last 100 lines):\n%s", out.tail(100))
		}
	})
	c := chaos.StartCluster(t, chaos.Spec{Brokers: 1, Frontends: 2, Output: out, Env: map[string]string{
		"SCC_CHANNELS_FILE":              rules,
		"SCC_PRESENCE_EVENT_INTERVAL":    interval.String(),
		"SCC_PRESENCE_EVENT_MAX_MEMBERS": strconv.Itoa(limit),
		// The limits that would legitimately pace or refuse a storm this
		// size, set so that all of it arrives within about a second
		// (docs/configuration.md): the frontend-wide subscribe rate
		// (default 5000/s, burst 10000), which paces subscribes beyond
		// its burst rather than refusing them and so would spread a
		// bigger storm, or one on a frontend that had spent its burst,
		// over seconds, is off, and so are the per-IP limits on
		// connections, handshakes and subscribes and the handshake rate
		// (their defaults are off too; set here so the test does not
		// depend on the defaults). Each frontend holds about 2,500
		// sockets, which SCC_MAX_CONNECTIONS (derived from the open-files
		// limit, typically 20,000 or more on a server) lets in.
		"SCC_SUBSCRIBE_RATE":            "0",
		"SCC_SUBSCRIBE_RATE_PER_IP":     "0",
		"SCC_MAX_CONNECTIONS_PER_IP":    "0",
		"SCC_MAX_HANDSHAKES_PER_IP":     "0",
		"SCC_MAX_HANDSHAKES_PER_SECOND": "0",
		"SCC_MAX_SUBSCRIPTIONS_PER_IP":  "0",
		"SCC_LOG_LEVEL":                 "warn",
	}})
	c.WaitRing(1, 0, 15*time.Second)
	urls := c.FrontendURLs()
	var addrs []string
	for _, u := range urls {
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, pu.Host)
	}

	// Open and handshake every member's socket first.
	procs := make([]*stormProc, stormProcs)
	for i := range procs {
		// Linux routes all of 127/8 to the loopback interface; elsewhere
		// the kernel picks the source address.
		var srcs []string
		for j := range 4 {
			if runtime.GOOS == "linux" {
				srcs = append(srcs, fmt.Sprintf("127.0.0.%d", 2+4*i+j))
			}
		}
		procs[i] = startStormClient(t, stormConfig{Addrs: addrs, Path: "/socketcluster/", Conns: stormMembers / stormProcs,
			Sources: srcs, Channel: stormChannel, Senders: 8, ParseEvery: 10})
	}
	for i, p := range procs {
		st, ok := p.next(2 * time.Minute)
		if !ok || !st.Ready {
			t.Fatalf("storm client %d did not open its sockets", i)
		}
		if st.Conns != stormMembers/stormProcs {
			t.Fatalf("storm client %d opened %d sockets, %d failed (%s)", i, st.Conns, st.DialErrors, st.FirstError)
		}
	}

	// The watchers: each subscribes to the events first, then joins, so
	// that every watcher sees the event listing the last watcher; the
	// storm starts once all of them have.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	watched := make([]stormEvents, stormWatchers)
	settled := make(chan int, stormWatchers)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	var mu sync.Mutex // guards watched
	var first *client.Client
	for i := range stormWatchers {
		cl, err := client.Dial(ctx, urls[i%len(urls)], client.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if first == nil {
			first = cl
		}
		t.Cleanup(func() { cl.Close() })
		events, err := cl.Subscribe(ctx, protocol.PresenceChannel(stormChannel), client.SubscribeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cl.Subscribe(ctx, stormChannel, client.SubscribeOptions{}); err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			w := &watched[i]
			counting := false
			for {
				m, err := events.Next(ctx)
				if err != nil {
					mu.Lock()
					w.dropped = events.Dropped()
					mu.Unlock()
					return
				}
				var ev protocol.PresenceEvent
				if err := json.Unmarshal(m.Data, &ev); err != nil {
					t.Errorf("watcher %d: event %s: %v", i, m.Data, err)
					continue
				}
				if !counting {
					if ev.Clients == stormWatchers {
						counting = true
						settled <- i
					}
					continue
				}
				mu.Lock()
				w.events++
				w.joins += len(ev.Join)
				w.leaves += len(ev.Leave)
				w.omitted += ev.Omitted
				w.maxEntries = max(w.maxEntries, len(ev.Join)+len(ev.Leave))
				w.last = ev
				mu.Unlock()
			}
		})
	}
	for range stormWatchers {
		select {
		case <-settled:
		case <-ctx.Done():
			t.Fatal("the watchers did not see each other join")
		}
	}

	// The storm.
	start := time.Now()
	for _, p := range procs {
		p.send("go")
	}
	total := stormMembers + stormWatchers
	clustertest.WaitFor(t, time.Minute, fmt.Sprintf("presence stats of %d clients", total), func() bool {
		st, err := first.PresenceStats(ctx, stormChannel)
		return err == nil && st.Clients == total
	})
	// The stats are exact at once; the events that carry the last joins
	// go out within an interval. Wait for every watcher to see the final
	// count.
	clustertest.WaitFor(t, time.Minute, "every watcher sees the final count in an event", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for i := range watched {
			if watched[i].last.Clients != total {
				return false
			}
		}
		return true
	})
	for i, p := range procs {
		st, ok := p.next(time.Minute)
		if !ok || st.AckMS == 0 {
			t.Fatalf("storm client %d: not every subscribe was answered (%+v)", i, st)
		}
	}
	// What the watchers saw of the storm, before its members leave.
	mu.Lock()
	watchedStorm := append([]stormEvents(nil), watched...)
	mu.Unlock()
	watchedElapsed := time.Since(start)
	var sts []stormStatus
	for _, p := range procs {
		p.send("stop")
	}
	for i, p := range procs {
		st, ok := p.next(time.Minute)
		if !ok || !st.Done {
			t.Fatalf("storm client %d did not report", i)
		}
		sts = append(sts, st)
	}
	// Every socket of the storm is closed now: this encloses every event
	// the storm clients counted.
	elapsed := time.Since(start)
	cancel()
	wg.Wait()

	// At most one event per interval: over the elapsed time (which
	// encloses every event of the storm), no more intervals passed.
	maxEvents := int(elapsed/interval) + 1
	for i, st := range sts {
		t.Logf("storm client %d: %d sockets; subscribes written in %d ms, all answered in %d ms; %d acked, %d refused; %d events (at most %d per socket; %d decoded, at most %d entries); closed %v",
			i, st.Conns, st.SendMS, st.AckMS, st.Acked, st.SubErrors, st.Events, st.MaxEventsPerConn, st.Parsed, st.MaxEntries, st.Closed)
		if st.SubErrors != 0 || st.Acked != int64(2*st.Conns) {
			t.Errorf("storm client %d: %d of %d subscribes acknowledged, %d refused", i, st.Acked, 2*st.Conns, st.SubErrors)
		}
		if len(st.Closed) != 0 {
			t.Errorf("storm client %d: sockets closed by the server: %v", i, st.Closed)
		}
		if st.MaxEntries > int64(limit) {
			t.Errorf("storm client %d: an event listed %d joins and leaves, the cap is %d", i, st.MaxEntries, limit)
		}
		if st.MaxEventsPerConn > int64(maxEvents) {
			t.Errorf("storm client %d: a socket got %d events in %v, at most %d intervals", i, st.MaxEventsPerConn, elapsed, maxEvents)
		}
		if st.Parsed == 0 {
			t.Errorf("storm client %d decoded no event", i)
		}
	}
	maxWatched := int(watchedElapsed/interval) + 1
	for i, w := range watchedStorm {
		mu.Lock()
		w.dropped = watched[i].dropped
		mu.Unlock()
		t.Logf("watcher %d: %d events, %d joins listed, %d omitted, at most %d entries; last %d clients, %d users",
			i, w.events, w.joins, w.omitted, w.maxEntries, w.last.Clients, w.last.Users)
		if w.dropped != 0 {
			t.Errorf("watcher %d dropped %d events", i, w.dropped)
		}
		if w.maxEntries > limit {
			t.Errorf("watcher %d: an event listed %d joins and leaves, the cap is %d", i, w.maxEntries, limit)
		}
		if w.events > maxWatched {
			t.Errorf("watcher %d got %d events in %v, at most %d intervals", i, w.events, watchedElapsed, maxWatched)
		}
		if w.joins+w.omitted != stormMembers || w.leaves != 0 {
			t.Errorf("watcher %d: %d joins listed and %d omitted, %d leaves; want %d joins in all and no leave",
				i, w.joins, w.omitted, w.leaves, stormMembers)
		}
	}

	slow, closes := 0.0, map[string]float64{}
	for _, name := range c.Names(localcluster.RoleFrontend) {
		s, err := c.Metrics(name)
		if err != nil {
			t.Errorf("scraping %s: %v", name, err)
			continue
		}
		slow += s.Sum("scc_frontend_closes_total", "reason", "slow_consumer")
		for k, v := range s.ByLabel("scc_frontend_closes_total", "reason") {
			if v > 0 {
				closes[k] += v
			}
		}
	}
	t.Logf("storm of %d members over %v; cap %d per event, interval %v, so at most %d events; frontends' closes %v",
		stormMembers, elapsed.Round(time.Millisecond), limit, interval, maxEvents, closes)
	if slow != 0 {
		t.Errorf("%v sockets were closed as slow consumers", slow)
	}

	// Both frontends hold the channel (a watcher is on each), so each
	// receives every event of the owner and counts what they left out
	// as the owner did, once the last event arrived.
	ownerDrops := func(reason string) float64 {
		return c.MetricOf("broker-1", "scc_broker_presence_event_drops_total", "reason", reason)
	}
	clustertest.WaitFor(t, 30*time.Second, "every frontend counts the drops its owner counted", func() bool {
		for _, name := range c.Names(localcluster.RoleFrontend) {
			for _, r := range []string{"over_cap", "coalesced"} {
				if c.MetricOf(name, "scc_frontend_presence_event_drops_total", "reason", r) != ownerDrops(r) {
					return false
				}
			}
		}
		return true
	})
	var deliveries float64
	for _, name := range c.Names(localcluster.RoleFrontend) {
		deliveries += c.MetricOf(name, "scc_frontend_presence_event_deliveries_total")
		t.Logf("%s: %v presence events, %v deliveries, %v over the cap", name,
			c.MetricOf(name, "scc_frontend_presence_events_total"), c.MetricOf(name, "scc_frontend_presence_event_deliveries_total"),
			c.MetricOf(name, "scc_frontend_presence_event_drops_total", "reason", "over_cap"))
	}
	if ownerDrops("over_cap") < stormMembers-float64(limit)*float64(maxEvents) {
		t.Errorf("the owner counted %v changes over the cap", ownerDrops("over_cap"))
	}
	var received int64
	for _, st := range sts {
		received += st.Events
	}
	if deliveries < float64(received) {
		t.Errorf("the frontends counted %v event deliveries, the storm's sockets received %d", deliveries, received)
	}
}
