package frontend

import (
	"testing"
	"time"

	"github.com/sccgo/sccgo/internal/wsframe"
)

// BenchmarkConnect: one client connection per op (TCP dial, upgrade,
// SocketCluster handshake and close) against a frontend with the
// short-connection charge off and on. "on" counts every connection as
// short (ShortConnectionTime an hour) at a rate and burst that no run
// reaches, so each connection pays the turn check at its upgrade and the
// charge at its teardown, and none ever waits.
func BenchmarkConnect(b *testing.B) {
	for _, c := range []struct {
		name string
		rate float64
	}{{"short-off", 0}, {"short-on", 1e12}} {
		b.Run(c.name, func(b *testing.B) {
			cfg := testConfig()
			cfg.ShortConnectionsPerIP, cfg.ShortConnectionBurstPerIP, cfg.ShortConnectionTime = c.rate, 1<<30, time.Hour
			srv := startServer(b, cfg)
			hs := wsframe.AppendText(nil, `{"event":"#handshake","data":{},"cid":1}`)
			for b.Loop() {
				conn, br, err := rawUpgrade(srv.Addr().String(), nil)
				if err != nil {
					b.Fatal(err)
				}
				conn.Write(hs)
				if err := readUntil(conn, br, `"rid":1`); err != nil {
					b.Fatal(err)
				}
				conn.Close()
			}
			b.StopTimer()
			if c.rate > 0 {
				waitFor(b, 10*time.Second, "the connections' address to be charged", func() bool { return srv.sources.len() == 1 })
			}
		})
	}
}
