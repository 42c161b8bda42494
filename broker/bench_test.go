package broker

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkForward measures one publish fanned out to N frontend links,
// over real loopback links: b.N publishes, each delivered to every link.
func BenchmarkForward(b *testing.B) {
	for _, n := range []int{1, 10, 50} {
		b.Run(fmt.Sprintf("links=%d", n), func(b *testing.B) {
			br := startBroker(b, nil)
			subs := make([]*fakeFE, n)
			for i := range subs {
				subs[i] = dialFE(b, br.listenAddr, fmt.Sprint("sub-", i))
				subs[i].mu.Lock()
				subs[i].countOnly = true
				subs[i].mu.Unlock()
				subs[i].subscribeWait("bench")
			}
			pub := dialFE(b, br.listenAddr, "pub")
			payload := `{"text":"hello, this is a typical chat message of about a hundred bytes","n":12345}`
			const window = 5000 // unacknowledged publishes in flight
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for i := 1; i <= b.N; i++ {
				seq := pub.publish("bench", payload)
				if seq%1000 == 0 && seq > window {
					waitFor(b, "pubacks", func() bool { return pub.lastPubAck() >= seq-window })
				}
			}
			for _, s := range subs {
				waitFor(b, "deliveries", func() bool {
					s.mu.Lock()
					defer s.mu.Unlock()
					return s.nDeliver >= b.N
				})
			}
			elapsed := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "publishes/s")
			b.ReportMetric(float64(b.N*n)/elapsed.Seconds(), "deliveries/s")
		})
	}
}
