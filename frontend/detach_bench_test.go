//go:build linux

package frontend

import (
	"syscall"
	"testing"
	"time"
)

// BenchmarkDeliverToIdle measures one publish delivered to 10,000 idle
// subscribers, parked with their WebSocket state (attached) or without
// it (detached: every delivery rebuilds it first). Each iteration waits,
// untimed, until every socket is idle again, then publishes once and
// waits for every subscriber to have it. ns/op is the wall time of one
// such delivery; cpu-µs/delivery is the server process's CPU (user and
// system, from getrusage) per subscriber delivered, so it includes the
// test's own client-side waits only as far as they run in this process.
func BenchmarkDeliverToIdle(b *testing.B) {
	for _, detach := range []bool{false, true} {
		name := "attached"
		if detach {
			name = "detached"
		}
		b.Run(name, func(b *testing.B) { benchDeliverToIdle(b, 10000, detach) })
	}
}

func benchDeliverToIdle(b *testing.B, n int, detach bool) {
	cfg := testConfig()
	cfg.InboundRate = 0
	cfg.IdleDetach = 0
	if detach {
		cfg.IdleDetach = 1
	}
	cfg.PingInterval = time.Minute
	cfg.PingTimeout = 2 * time.Minute
	cfg.HandshakeTimeout = time.Minute
	cfg.MaxConnectionsPerIP = 0
	srv := startServer(b, cfg)

	received, stop := startFanoutClients(b, srv, n)
	defer stop()
	waitFor(b, 30*time.Second, "subscriptions", func() bool { return srv.Stats().Subscriptions == int64(n) })
	data := []byte(`{"text":"hello subscribers","seq":12345}`)
	sent := int64(0)
	var cpu time.Duration
	for b.Loop() {
		b.StopTimer()
		waitFor(b, 30*time.Second, "every socket idle", func() bool {
			if detach {
				return srv.detachedN.Load() == int64(n)
			}
			return srv.parkedN.Load() == int64(n)
		})
		c0 := rusage(b)
		b.StartTimer()
		srv.Deliver("bench", data)
		sent += int64(n)
		waitFor(b, 30*time.Second, "every subscriber delivered", func() bool { return received.Load() >= sent })
		cpu += rusage(b) - c0
	}
	b.ReportMetric(float64(cpu.Microseconds())/float64(sent), "cpu-µs/delivery")
}

func rusage(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
