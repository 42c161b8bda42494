package bench

import (
	"context"
	"testing"
	"time"

	"github.com/sccgo/sccgo/frontend"
	"github.com/sccgo/sccgo/internal/rules"
)

// TestDropEveryRecovers: subscribers cut during the run reconnect and
// recover on channels with history, so the check loses nothing; without
// history the same run reports what the cuts lost.
func TestDropEveryRecovers(t *testing.T) {
	for _, tc := range []struct {
		name    string
		history bool
	}{{"history", true}, {"no history", false}} {
		t.Run(tc.name, func(t *testing.T) {
			fc := frontend.DefaultConfig()
			if tc.history {
				set, err := rules.Default().WithDefaultHistory(10000, time.Minute)
				if err != nil {
					t.Fatal(err)
				}
				fc.Rules = set
			}
			cfg := shortConfig(startFrontendWith(t, fc))
			cfg.Duration = 2 * time.Second
			cfg.DropEvery = 200 * time.Millisecond
			cfg.DropFraction = 0.25
			res, err := Run(context.Background(), cfg)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			c := res.Check
			t.Logf("drops %d recovered %d failed %d; expected %d lost %d duplicated %d", res.Drops, res.Recovered, res.RecoveryFailed, c.Expected, c.Lost, c.Duplicated)
			if res.Drops == 0 || c.Duplicated != 0 || c.OutOfOrder != 0 || res.Disconnects != 0 {
				t.Fatalf("drops %d, check %+v, disconnects %d", res.Drops, c, res.Disconnects)
			}
			if tc.history && (!c.OK() || res.Recovered == 0 || res.RecoveryFailed != 0) {
				t.Fatalf("with history: recovered %d failed %d, check %+v", res.Recovered, res.RecoveryFailed, c)
			}
			if !tc.history && (c.Lost == 0 || res.Recovered != 0) {
				t.Fatalf("without history nothing was lost (%+v): the cuts did not bite", c)
			}
		})
	}
}
