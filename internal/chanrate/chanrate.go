package chanrate

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
	"golang.org/x/time/rate"
)

// Rule is the publish limit of one channel: Rate publishes per second with
// a bucket of Burst. A Rate of 0 means no limit.
type Rule struct {
	Rate  float64
	Burst int
}

// Config configures a Limiter.
type Config struct {
	// Default is the rule of every channel RuleFor does not decide.
	Default Rule
	// MaxChannels bounds the channels tracked at once (memory: about 150
	// bytes each plus the name). Beyond it idle channels are forgotten,
	// then busy ones at random.
	MaxChannels int
	// RuleFor, if set, returns the rule of a channel; it is called on
	// every publish, so it must be cheap and safe for concurrent use.
	// Returning ok false applies Default.
	RuleFor func(channel string) (r Rule, ok bool)
}

// Validate reports an unusable Config.
func (c Config) Validate() error {
	var errs []error
	if c.Default.Rate < 0 {
		errs = append(errs, errors.New("channel publish rate must not be negative"))
	}
	if c.Default.Rate > 0 && c.Default.Burst <= 0 {
		errs = append(errs, errors.New("channel publish burst must be positive"))
	}
	if c.MaxChannels <= 0 {
		errs = append(errs, fmt.Errorf("channel rate table size %d must be positive", c.MaxChannels))
	}
	return errors.Join(errs...)
}

const (
	shardCount = 16
	// evictScan bounds the entries examined to make room for one new
	// channel, so a full table costs a bounded amount per new channel.
	evictScan = 32
)

type entry struct {
	lim  *rate.Limiter
	rule Rule
}

type shard struct {
	mu sync.Mutex
	m  map[string]*entry
}

// Limiter is a bounded set of per-channel token buckets. It is safe for
// concurrent use.
type Limiter struct {
	cfg      Config
	perShard int
	shards   [shardCount]shard
}

// New returns a Limiter for cfg, which must be valid.
func New(cfg Config) *Limiter {
	l := &Limiter{cfg: cfg, perShard: max(1, (cfg.MaxChannels+shardCount-1)/shardCount)}
	for i := range l.shards {
		l.shards[i].m = make(map[string]*entry)
	}
	return l
}

// Allow reports whether one more publish to channel fits its rule now, and
// takes a token if it does.
func (l *Limiter) Allow(channel string) bool {
	return l.AllowAt(channel, time.Now())
}

// AllowN reports whether n more tokens fit channel's rule now, and takes
// them if they do. n is capped at the rule's burst: a cost larger than
// the bucket takes all of a full one.
func (l *Limiter) AllowN(channel string, n int) bool {
	return l.allowAt(channel, time.Now(), n)
}

// AllowAt is Allow at the given time, for tests.
func (l *Limiter) AllowAt(channel string, now time.Time) bool {
	return l.allowAt(channel, now, 1)
}

// AllowNAt is AllowN at the given time, for tests.
func (l *Limiter) AllowNAt(channel string, now time.Time, n int) bool {
	return l.allowAt(channel, now, n)
}

func (l *Limiter) allowAt(channel string, now time.Time, n int) bool {
	r := l.cfg.Default
	if l.cfg.RuleFor != nil {
		if cr, ok := l.cfg.RuleFor(channel); ok {
			r = cr
		}
	}
	if r.Rate <= 0 {
		return true
	}
	if r.Burst <= 0 {
		r.Burst = 1
	}
	s := &l.shards[xxhash.Sum64String(channel)%shardCount]
	s.mu.Lock()
	e := s.m[channel]
	if e == nil {
		if len(s.m) >= l.perShard {
			s.evictLocked(now)
		}
		e = &entry{lim: rate.NewLimiter(rate.Limit(r.Rate), r.Burst), rule: r}
		s.m[channel] = e
	} else if e.rule != r {
		// The channel's rule changed: keep its tokens, adopt the rule.
		e.lim.SetLimitAt(now, rate.Limit(r.Rate))
		e.lim.SetBurstAt(now, r.Burst)
		e.rule = r
	}
	lim := e.lim
	s.mu.Unlock()
	return lim.AllowN(now, min(n, r.Burst))
}

// evictLocked removes idle channels among a few (a full bucket means no
// publish for a while: a new bucket would be the same), or, when none of
// them is idle, the one with the most tokens left: the least busy, and the
// one whose reset to a full bucket gives the least away. A flooded
// channel, whose bucket is empty, is the last to go.
func (s *shard) evictLocked(now time.Time) {
	n := 0
	var victim string
	most := -1.0
	removed := false
	for ch, e := range s.m { // map order is random
		tokens := e.lim.TokensAt(now)
		if tokens >= float64(e.rule.Burst) {
			delete(s.m, ch)
			removed = true
		} else if tokens > most {
			victim, most = ch, tokens
		}
		if n++; n >= evictScan {
			break
		}
	}
	if !removed && most >= 0 {
		delete(s.m, victim)
	}
}

// Len returns the number of channels tracked.
func (l *Limiter) Len() int {
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}
