package frontend

import (
	"fmt"
	"testing"
	"time"
)

// ownerBroker stands for a cluster broker: the join/leave events of a
// channel come from its owner, as publications on the companion channel.
type ownerBroker struct{ *LocalBroker }

// In a cluster the frontend counts the events its owners send, what they
// left out over the cap and what cancelled out, as each event says, and
// every event it queues to a socket.
func TestPresenceEventMetricsFromOwners(t *testing.T) {
	cfg := presenceConfig(t)
	cfg.Broker = ownerBroker{NewLocalBroker()}
	srv := startServer(t, cfg)
	reg := srv.Registry()
	w := dial(t, srv)
	w.handshake("")
	w.subscribe("room:1", 2)
	w.subscribe("#presence:room:1", 3)
	w2 := dial(t, srv)
	w2.handshake("")
	w2.subscribe("#presence:room:1", 2)

	srv.Deliver("#presence:room:1", []byte(`{"join":[{"client":"a","info":{"note":"\"omitted\": 9"}}],"omitted":3,"coalesced":2,"clients":5,"users":0}`))
	srv.Deliver("#presence:room:1", []byte(`{"leave":[{"client":"a"}],"clients":4,"users":0}`))
	srv.Deliver("#presence:room:2", []byte(`{"join":[{"client":"b"}],"omitted":1,"clients":1,"users":0}`)) // nobody here watches room:2
	for _, c := range []*rawClient{w, w2} {
		if ev := nextEvent(t, c); ev.Omitted != 3 || ev.Coalesced != 2 || ev.Clients != 5 {
			t.Fatalf("first event = %+v", ev)
		}
		if ev := nextEvent(t, c); len(ev.Leave) != 1 || ev.Clients != 4 {
			t.Fatalf("second event = %+v", ev)
		}
	}
	for _, c := range []struct {
		name  string
		label []string
		want  float64
	}{
		{"scc_frontend_presence_events_total", nil, 3},
		{"scc_frontend_presence_event_deliveries_total", nil, 4},
		{"scc_frontend_presence_event_drops_total", []string{"reason", "over_cap"}, 4},
		{"scc_frontend_presence_event_drops_total", []string{"reason", "coalesced"}, 2},
	} {
		if got := counter(t, reg, c.name, c.label...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.label, got, c.want)
		}
	}
}

// Standalone the hub counts each event and its drops once, when it
// publishes it; the frontend adds the deliveries.
func TestPresenceEventMetricsStandalone(t *testing.T) {
	cfg := presenceConfig(t)
	cfg.Presence.EventMaxMembers = 1
	srv := startServer(t, cfg)
	reg := srv.Registry()
	w := dial(t, srv)
	w.handshake("")
	w.subscribe("#presence:room:1", 2) // first, so that it sees every event
	w.subscribe("room:1", 3)
	const members = 4
	for range members {
		m := dial(t, srv)
		m.handshake("")
		m.subscribe("room:1", 2)
	}
	events, omitted := 0, 0
	for {
		ev := nextEvent(t, w)
		events++
		omitted += ev.Omitted
		if len(ev.Join) > 1 {
			t.Fatalf("an event listed %d joins over the cap of 1", len(ev.Join))
		}
		if ev.Clients == members+1 {
			break
		}
	}
	want := map[string]float64{
		"events":     float64(events),
		"deliveries": float64(events),
		"over_cap":   float64(omitted),
	}
	got := func() map[string]float64 {
		return map[string]float64{
			"events":     counter(t, reg, "scc_frontend_presence_events_total"),
			"deliveries": counter(t, reg, "scc_frontend_presence_event_deliveries_total"),
			"over_cap":   counter(t, reg, "scc_frontend_presence_event_drops_total", "reason", "over_cap"),
		}
	}
	waitFor(t, 5*time.Second, fmt.Sprintf("counters %v", want), func() bool {
		return fmt.Sprint(got()) == fmt.Sprint(want)
	})
	if omitted == 0 {
		t.Logf("no event went over the cap of 1 (each join came in its own interval)")
	}
}
