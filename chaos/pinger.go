package chaos

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/sccgo/sccgo/bench"
	"github.com/sccgo/sccgo/client"
)

// PingerPublisher is the publisher id in a Pinger's payloads.
const PingerPublisher = 9999

// Pinger publishes a timestamped payload to every channel of a list once
// per period, so that subscribers can tell when they receive again. The
// publishes are spread evenly over the period, not sent in a burst.
type Pinger struct {
	c      *client.Client
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// StartPinger connects to url and starts publishing; it stops when t ends
// or at Stop.
func StartPinger(t testing.TB, url string, channels []string, every time.Duration, size int) *Pinger {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	c, err := client.Dial(ctx, url, client.Options{})
	cancel()
	if err != nil {
		t.Fatalf("pinger dialing %s: %v", url, err)
	}
	p := &Pinger{c: c}
	var pctx context.Context
	pctx, p.cancel = context.WithCancel(context.Background())
	p.wg.Go(func() {
		tick := time.NewTicker(max(every/time.Duration(len(channels)), time.Millisecond))
		defer tick.Stop()
		seq := make([]uint64, len(channels))
		for i := 0; ; i = (i + 1) % len(channels) {
			select {
			case <-pctx.Done():
				return
			case <-tick.C:
			}
			seq[i]++
			data := bench.EncodePayload(PingerPublisher, seq[i], time.Now(), size)
			// Fire and forget: the pinger must not stall behind a slow
			// acknowledgement.
			_ = c.TransmitPublish(channels[i], data)
		}
	})
	t.Cleanup(p.Stop)
	return p
}

// Stop stops publishing and closes the client; it is idempotent.
func (p *Pinger) Stop() {
	p.cancel()
	p.wg.Wait()
	p.c.Close()
}
