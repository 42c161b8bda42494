package nodelink

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"
)

// Redialer keeps a link to one address up: it dials, hands each
// established link to up, and when that returns (the link closed) or a dial
// fails, waits a jittered backoff and dials again, until Close.
type Redialer struct {
	hostport string
	cfg      Config
	min, max time.Duration
	up       func(ctx context.Context, l *Link)

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	cur     *Link
	started bool
}

// NewRedialer returns a Redialer for hostport. Backoff waits are drawn
// uniformly from [min, min(max, min·2^failures)] (defaults 50ms and 500ms
// when zero). up is called from the Redialer's goroutine after every
// successful handshake; it should run l.Run and return when the link has
// closed. ctx passed to up is cancelled by Close.
func NewRedialer(hostport string, cfg Config, min, max time.Duration, up func(ctx context.Context, l *Link)) *Redialer {
	if min <= 0 {
		min = DefaultRedialMin
	}
	if max < min {
		max = DefaultRedialMax
		if max < min {
			max = min
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Redialer{hostport: hostport, cfg: cfg.withDefaults(), min: min, max: max, up: up, ctx: ctx, cancel: cancel}
}

// Start begins dialing. It is a no-op after the first call or after Close.
func (r *Redialer) Start() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.started || r.ctx.Err() != nil {
		return
	}
	r.started = true
	r.wg.Go(r.loop)
}

// Link returns the current link, or nil while there is none.
func (r *Redialer) Link() *Link {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cur
}

// Close stops redialing, closes the current link and waits for the
// Redialer's goroutine (and so for up) to return.
func (r *Redialer) Close() {
	r.cancel()
	r.mu.Lock()
	cur := r.cur
	r.mu.Unlock()
	if cur != nil {
		cur.Close(ReasonShutdown)
	}
	r.wg.Wait()
}

func (r *Redialer) backoff(failures int) time.Duration {
	ceil := r.max
	if failures < 30 && r.min<<failures < r.max {
		ceil = r.min << failures
	}
	return r.min + rand.N(ceil-r.min+1)
}

func (r *Redialer) loop() {
	log := r.cfg.Logger.With("peer", r.hostport)
	failures := 0
	timer := time.NewTimer(0)
	<-timer.C
	defer timer.Stop()
	for {
		l, err := Dial(r.ctx, r.hostport, r.cfg)
		if err == nil {
			r.mu.Lock()
			if r.ctx.Err() != nil {
				r.mu.Unlock()
				l.Close(ReasonShutdown)
				return
			}
			r.cur = l
			r.mu.Unlock()
			failures = 0
			r.up(r.ctx, l)
			l.Close(ReasonShutdown) // in case up returned without running it
			r.mu.Lock()
			r.cur = nil
			r.mu.Unlock()
		} else if r.ctx.Err() == nil {
			if failures == 0 {
				log.Warn("link dial failed; retrying", "err", err)
			} else {
				log.Debug("link dial failed", "err", err)
			}
			failures++
		}
		if r.ctx.Err() != nil {
			return
		}
		timer.Reset(r.backoff(failures))
		select {
		case <-r.ctx.Done():
			return
		case <-timer.C:
		}
	}
}
