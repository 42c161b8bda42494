package history

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
)

// Defaults for Config.
const (
	DefaultMaxBytes      = 256 << 20
	DefaultShards        = 64
	DefaultMetaTTL       = 24 * time.Hour
	DefaultSweepInterval = time.Second
)

// Fixed costs counted against Config.MaxBytes on top of publication data:
// a publication's slot in its stream's ring, and a stream (map entry,
// struct, epoch) on top of its name.
const (
	PubOverhead    = 40
	StreamOverhead = 160
)

// Eviction reasons counted in Stats.Evicted (bounded: metric labels).
const (
	EvictSize     = "size"     // a publication beyond the channel's history.size
	EvictTTL      = "ttl"      // publications history.ttl after the last one
	EvictBudget   = "budget"   // a publication dropped for the memory budget
	EvictStream   = "stream"   // a whole stream (its epoch) dropped for the memory budget
	EvictMetaTTL  = "meta_ttl" // a stream idle for MetaTTL
	EvictRestored = "restored" // publications replaced by Restore or by Put under another epoch
	EvictGap      = "gap"      // publications dropped because Put skipped offsets
)

// Reasons a Since is not Recovered (bounded: metric labels).
const (
	ReasonNone     = ""         // recovered, or no recovery asked
	ReasonEpoch    = "epoch"    // the stream's history was lost since from was taken
	ReasonGone     = "gone"     // publications after from were dropped (ttl, size, budget)
	ReasonLimit    = "limit"    // more than limit publications were missed
	ReasonAhead    = "ahead"    // from is past the stream's last offset
	ReasonDisabled = "disabled" // the channel has no history
	// ReasonMoved is a broker's answer to a History request for a
	// channel that another broker owns under its ring and whose stream
	// it does not hold: creating one would start a second epoch. The
	// asker tries again at the owner; clients never see it.
	ReasonMoved = "moved"
)

// ErrInvalid is returned by Config.Validate.
var ErrInvalid = errors.New("history: invalid config")

// Options are one channel's history settings, from its channel rule
// (rules.History). Size 0 keeps nothing: such a channel never reaches the
// Store.
type Options struct {
	// Size is how many publications are kept.
	Size int
	// TTL is how long publications are kept after the stream's last
	// publication; 0 keeps them until evicted by Size or the budget.
	TTL time.Duration
}

// Enabled reports whether o keeps any history.
func (o Options) Enabled() bool { return o.Size > 0 }

// Position is a place in a channel's stream: the offset of its last
// publication (0 before the first) under an epoch.
type Position struct {
	Offset uint64
	Epoch  string
}

// Pub is one retained publication. Data is owned by the Store and must
// not be modified.
type Pub struct {
	Offset uint64
	// Time is when it was appended, in Unix nanoseconds.
	Time int64
	Data []byte
}

// Result answers Since.
type Result struct {
	// Pubs are the publications after the asked offset, in offset order,
	// when Recovered; nil otherwise. Their Data is shared and read-only.
	Pubs []Pub
	// Position is the stream's current position: the last offset and the
	// epoch live publications continue from.
	Position Position
	// Recovered is true when Pubs are exactly every publication after the
	// asked position.
	Recovered bool
	// Reason says why not Recovered (a Reason* constant).
	Reason string
}

// Snapshot is a copy of one stream, for moving or replicating it.
type Snapshot struct {
	Position Position
	// Time is the stream's last publication, in Unix nanoseconds.
	Time int64
	// Pubs are the retained publications in offset order; the last one's
	// offset is Position.Offset. Data is shared and read-only.
	Pubs []Pub
}

// Config configures a Store.
type Config struct {
	// MaxBytes bounds the Store's memory: publication data plus
	// PubOverhead per publication and StreamOverhead plus the name per
	// stream. Default 256 MiB.
	MaxBytes int64
	// Shards is the number of lock shards (default 64). The budget is
	// split evenly among them.
	Shards int
	// MetaTTL is how long a stream's epoch and offset are kept after its
	// last publication (default 24h). After it, the next publication
	// starts a new epoch.
	MetaTTL time.Duration
	// SweepInterval is how often Run drops expired publications and
	// streams (default 1s).
	SweepInterval time.Duration
	// Now returns the current time; nil is time.Now. For tests.
	Now func() time.Time
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		MaxBytes:      DefaultMaxBytes,
		Shards:        DefaultShards,
		MetaTTL:       DefaultMetaTTL,
		SweepInterval: DefaultSweepInterval,
	}
}

// Validate reports a Config that cannot work.
func (c Config) Validate() error {
	switch {
	case c.MaxBytes <= 0:
		return errors.Join(ErrInvalid, errors.New("MaxBytes must be positive"))
	case c.Shards <= 0:
		return errors.Join(ErrInvalid, errors.New("Shards must be positive"))
	case c.MetaTTL <= 0:
		return errors.Join(ErrInvalid, errors.New("MetaTTL must be positive"))
	case c.SweepInterval <= 0:
		return errors.Join(ErrInvalid, errors.New("SweepInterval must be positive"))
	}
	return nil
}

// Store holds the streams of one node. It is safe for concurrent use.
type Store struct {
	cfg    Config
	now    func() time.Time
	shards []shard
	budget int64 // per shard

	streams atomic.Int64
	pubs    atomic.Int64
	bytes   atomic.Int64
	evicted [numEvict]atomic.Uint64
	epochs  atomic.Uint64 // streams created (each with a new epoch)
}

var evictReasons = [...]string{EvictSize, EvictTTL, EvictBudget, EvictStream, EvictMetaTTL, EvictRestored, EvictGap}

const numEvict = len(evictReasons)

func evictIndex(reason string) int {
	for i, r := range evictReasons {
		if r == reason {
			return i
		}
	}
	panic("history: unknown eviction reason " + reason)
}

type shard struct {
	mu    sync.Mutex
	m     map[string]*stream
	bytes int64
	// lru lists the streams by last publication, least recent first
	// (a circular list through a sentinel).
	lru stream
	_   [40]byte // keep hot shard locks off one cache line
}

type stream struct {
	name  string
	epoch string
	top   uint64
	last  int64 // unix nanos of the last publication or creation
	ttl   time.Duration
	size  int
	ring  []Pub // circular; ring[head] is the oldest of n
	head  int
	n     int
	bytes int64 // counted bytes, StreamOverhead included

	prev, next *stream
}

// New returns a Store; it starts nothing (see Run).
func New(cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Store{cfg: cfg, now: cfg.Now, shards: make([]shard, cfg.Shards)}
	if s.now == nil {
		s.now = time.Now
	}
	s.budget = max(1, cfg.MaxBytes/int64(cfg.Shards))
	for i := range s.shards {
		sh := &s.shards[i]
		sh.m = make(map[string]*stream)
		sh.lru.prev, sh.lru.next = &sh.lru, &sh.lru
	}
	return s, nil
}

func (s *Store) shard(channel string) *shard {
	return &s.shards[xxhash.Sum64String(channel)%uint64(len(s.shards))]
}

// NewEpoch returns a fresh random epoch: 8 URL-safe characters.
func NewEpoch() string {
	var b [6]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// Append adds a publication of data (copied) to channel's stream,
// creating the stream under a new epoch if there is none, and returns its
// position. then, if not nil, runs under the stream's lock with that
// position, so publications fanned out from it leave in offset order. A
// channel whose opts keep nothing is not stored: Append returns the zero
// Position and does not call then.
func (s *Store) Append(channel string, opts Options, data []byte, then func(Position)) Position {
	pos, _ := s.AppendUnless(channel, opts, data, nil, then)
	return pos
}

// AppendUnless is Append, except that skip, if not nil, runs first under
// the stream's lock and, when it reports true, nothing is appended (ok
// false, then not called). A check that must not race with the stream's
// other writers (a publish the stream already took under another offset)
// goes there.
func (s *Store) AppendUnless(channel string, opts Options, data []byte, skip func() bool, then func(Position)) (pos Position, ok bool) {
	if !opts.Enabled() {
		return Position{}, false
	}
	now := s.now().UnixNano()
	sh := s.shard(channel)
	sh.mu.Lock()
	if skip != nil && skip() {
		sh.mu.Unlock()
		return Position{}, false
	}
	st := s.getLocked(sh, channel, opts, now)
	st.top++
	s.pushLocked(sh, st, Pub{Offset: st.top, Time: now, Data: append([]byte(nil), data...)})
	st.last = now
	sh.touch(st)
	s.enforceLocked(sh, st)
	pos = Position{Offset: st.top, Epoch: st.epoch}
	if then != nil {
		then(pos)
	}
	sh.mu.Unlock()
	return pos, true
}

// Put adds a publication whose offset was chosen elsewhere (by the owner
// of a replicated stream) under epoch. A stream under another epoch is
// replaced; a publication at or below the stream's last offset is a
// duplicate and is ignored (Put reports false); one past the next offset
// drops the retained publications, which no longer form a contiguous
// range. then, if not nil, runs under the stream's lock when p was added.
func (s *Store) Put(channel string, opts Options, epoch string, p Pub, then func(Position)) bool {
	if !opts.Enabled() || epoch == "" || p.Offset == 0 {
		return false
	}
	now := s.now().UnixNano()
	sh := s.shard(channel)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	st := sh.m[channel]
	if st != nil && st.epoch != epoch {
		s.clearLocked(sh, st, EvictRestored)
		st.epoch, st.top = epoch, 0
	}
	if st == nil {
		st = s.newStreamLocked(sh, channel, opts, now)
		st.epoch = epoch
	}
	st.ttl, st.size = opts.TTL, opts.Size
	if p.Offset <= st.top {
		return false
	}
	if p.Offset != st.top+1 {
		s.clearLocked(sh, st, EvictGap)
	}
	st.top = p.Offset
	if p.Time == 0 {
		p.Time = now
	}
	p.Data = append([]byte(nil), p.Data...)
	s.pushLocked(sh, st, p)
	st.last = now
	sh.touch(st)
	s.enforceLocked(sh, st)
	if then != nil {
		then(Position{Offset: st.top, Epoch: st.epoch})
	}
	return true
}

// Since returns the publications of channel after from, or says why it
// cannot (see Result), creating the stream under a new epoch if there is
// none so that the returned Position can be recovered from later. A from
// with an empty Epoch asks for no recovery: Result holds only the current
// Position. At most limit publications are returned; more missed is
// ReasonLimit. then, if not nil, runs under the stream's lock with the
// Result. A channel whose opts keep nothing gets ReasonDisabled.
func (s *Store) Since(channel string, opts Options, from Position, limit int, then func(Result)) Result {
	if !opts.Enabled() {
		r := Result{Reason: ReasonDisabled}
		if then != nil {
			then(r)
		}
		return r
	}
	now := s.now().UnixNano()
	sh := s.shard(channel)
	sh.mu.Lock()
	st := s.getLocked(sh, channel, opts, now)
	s.expireLocked(sh, st, now)
	r := st.since(from, limit)
	if then != nil {
		then(r)
	}
	sh.mu.Unlock()
	return r
}

func (st *stream) since(from Position, limit int) Result {
	r := Result{Position: Position{Offset: st.top, Epoch: st.epoch}}
	switch {
	case from.Epoch == "":
		return r
	case from.Epoch != st.epoch:
		r.Reason = ReasonEpoch
		return r
	case from.Offset > st.top:
		r.Reason = ReasonAhead
		return r
	case from.Offset == st.top:
		r.Recovered = true
		return r
	}
	missed := st.top - from.Offset
	if uint64(st.n) < missed {
		r.Reason = ReasonGone
		return r
	}
	if limit < 0 || missed > uint64(limit) {
		r.Reason = ReasonLimit
		return r
	}
	r.Pubs = make([]Pub, 0, missed)
	for i := st.n - int(missed); i < st.n; i++ {
		r.Pubs = append(r.Pubs, st.ring[(st.head+i)%len(st.ring)])
	}
	r.Recovered = true
	return r
}

// Latest returns up to limit of channel's most recent publications in
// offset order and its position, without creating a stream (ok false when
// there is none).
func (s *Store) Latest(channel string, limit int) (pubs []Pub, pos Position, ok bool) {
	now := s.now().UnixNano()
	sh := s.shard(channel)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	st := sh.m[channel]
	if st == nil {
		return nil, Position{}, false
	}
	s.expireLocked(sh, st, now)
	k := min(max(limit, 0), st.n)
	pubs = make([]Pub, 0, k)
	for i := st.n - k; i < st.n; i++ {
		pubs = append(pubs, st.ring[(st.head+i)%len(st.ring)])
	}
	return pubs, Position{Offset: st.top, Epoch: st.epoch}, true
}

// Position returns channel's current position without creating a stream.
func (s *Store) Position(channel string) (Position, bool) {
	sh := s.shard(channel)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	st := sh.m[channel]
	if st == nil {
		return Position{}, false
	}
	return Position{Offset: st.top, Epoch: st.epoch}, true
}

// Snapshot copies channel's stream (ok false when there is none).
func (s *Store) Snapshot(channel string) (snap Snapshot, ok bool) {
	now := s.now().UnixNano()
	sh := s.shard(channel)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	st := sh.m[channel]
	if st == nil {
		return Snapshot{}, false
	}
	s.expireLocked(sh, st, now)
	snap = Snapshot{Position: Position{Offset: st.top, Epoch: st.epoch}, Time: st.last}
	snap.Pubs = make([]Pub, 0, st.n)
	for i := 0; i < st.n; i++ {
		snap.Pubs = append(snap.Pubs, st.ring[(st.head+i)%len(st.ring)])
	}
	return snap, true
}

// Restore installs snap as channel's stream, replacing any, unless the
// stream already holds the same epoch at or past snap's offset (a copy
// that is not newer changes nothing; Restore reports false). Publications
// beyond opts.Size are dropped oldest first.
func (s *Store) Restore(channel string, opts Options, snap Snapshot) bool {
	if !opts.Enabled() || snap.Position.Epoch == "" {
		return false
	}
	now := s.now().UnixNano()
	sh := s.shard(channel)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	st := sh.m[channel]
	if st != nil && st.epoch == snap.Position.Epoch && st.top >= snap.Position.Offset {
		return false
	}
	if st == nil {
		st = s.newStreamLocked(sh, channel, opts, now)
	} else {
		s.clearLocked(sh, st, EvictRestored)
	}
	st.epoch, st.top = snap.Position.Epoch, snap.Position.Offset
	st.ttl, st.size = opts.TTL, opts.Size
	// Only a contiguous run ending at the top is kept.
	start := len(snap.Pubs)
	for start > 0 && snap.Pubs[start-1].Offset == snap.Position.Offset-uint64(len(snap.Pubs)-start) {
		start--
	}
	for _, p := range snap.Pubs[start:] {
		p.Data = append([]byte(nil), p.Data...)
		s.pushLocked(sh, st, p)
	}
	st.last = max(snap.Time, 1)
	if snap.Time == 0 {
		st.last = now
	}
	sh.touch(st)
	s.enforceLocked(sh, st)
	return true
}

// Channels returns the channels with a stream, publications or not: a
// stream created by a subscriber asking for its position has an epoch
// that a planned reshard must hand over as well.
func (s *Store) Channels() []string {
	var out []string
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for ch := range sh.m {
			out = append(out, ch)
		}
		sh.mu.Unlock()
	}
	return out
}

// Remove forgets channel's stream (after it moved to another owner).
func (s *Store) Remove(channel string) {
	sh := s.shard(channel)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if st := sh.m[channel]; st != nil {
		s.dropStreamLocked(sh, st, "")
	}
}

// Stats are the Store's gauges and counters.
type Stats struct {
	Streams      int64 // streams held (each an epoch)
	Publications int64 // publications retained
	Bytes        int64 // counted bytes (see Config.MaxBytes)
	Epochs       uint64
	// Evicted counts dropped publications by reason, and for EvictStream
	// and EvictMetaTTL dropped streams.
	Evicted map[string]uint64
}

// Stats returns the current figures.
func (s *Store) Stats() Stats {
	st := Stats{
		Streams: s.streams.Load(), Publications: s.pubs.Load(), Bytes: s.bytes.Load(),
		Epochs: s.epochs.Load(), Evicted: make(map[string]uint64, numEvict),
	}
	for i, r := range evictReasons {
		st.Evicted[r] = s.evicted[i].Load()
	}
	return st
}

// Evicted returns the count of one eviction reason.
func (s *Store) Evicted(reason string) uint64 { return s.evicted[evictIndex(reason)].Load() }

// EvictReasons lists the eviction reasons, for registering metrics.
func EvictReasons() []string { return append([]string(nil), evictReasons[:]...) }

// Run drops expired publications and streams every SweepInterval until
// stop is closed.
func (s *Store) Run(stop <-chan struct{}) {
	t := time.NewTicker(s.cfg.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			s.Sweep()
		}
	}
}

// Sweep drops the publications older than their stream's TTL and the
// streams idle for MetaTTL.
func (s *Store) Sweep() {
	now := s.now().UnixNano()
	meta := s.cfg.MetaTTL.Nanoseconds()
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for st := sh.lru.next; st != &sh.lru; {
			next := st.next
			if now-st.last > meta {
				s.dropStreamLocked(sh, st, EvictMetaTTL)
			} else {
				s.expireLocked(sh, st, now)
			}
			st = next
		}
		sh.mu.Unlock()
	}
}

// getLocked returns channel's stream, creating it; it applies opts.
func (s *Store) getLocked(sh *shard, channel string, opts Options, now int64) *stream {
	st := sh.m[channel]
	if st == nil {
		st = s.newStreamLocked(sh, channel, opts, now)
		st.epoch = NewEpoch()
		s.enforceLocked(sh, st)
		return st
	}
	st.ttl, st.size = opts.TTL, opts.Size
	for st.n > st.size {
		s.popLocked(sh, st, EvictSize)
	}
	return st
}

func (s *Store) newStreamLocked(sh *shard, channel string, opts Options, now int64) *stream {
	st := &stream{name: channel, ttl: opts.TTL, size: opts.Size, last: now, bytes: StreamOverhead + int64(len(channel))}
	sh.m[channel] = st
	sh.bytes += st.bytes
	s.bytes.Add(st.bytes)
	s.streams.Add(1)
	s.epochs.Add(1)
	sh.pushBack(st)
	return st
}

func (s *Store) pushLocked(sh *shard, st *stream, p Pub) {
	if st.n == st.size {
		s.popLocked(sh, st, EvictSize)
	}
	if st.n == len(st.ring) {
		// Grow by doubling up to size: a channel with a large history.size
		// and few publications holds only what it has.
		nr := make([]Pub, min(max(4, 2*len(st.ring)), st.size))
		for i := 0; i < st.n; i++ {
			nr[i] = st.ring[(st.head+i)%len(st.ring)]
		}
		st.ring, st.head = nr, 0
	}
	st.ring[(st.head+st.n)%len(st.ring)] = p
	st.n++
	b := int64(PubOverhead + len(p.Data))
	st.bytes += b
	sh.bytes += b
	s.bytes.Add(b)
	s.pubs.Add(1)
}

func (s *Store) popLocked(sh *shard, st *stream, reason string) {
	p := &st.ring[st.head]
	b := int64(PubOverhead + len(p.Data))
	*p = Pub{}
	st.head = (st.head + 1) % len(st.ring)
	st.n--
	st.bytes -= b
	sh.bytes -= b
	s.bytes.Add(-b)
	s.pubs.Add(-1)
	if reason != "" {
		s.evicted[evictIndex(reason)].Add(1)
	}
	if st.n == 0 {
		st.ring, st.head = nil, 0
	}
}

func (s *Store) clearLocked(sh *shard, st *stream, reason string) {
	for st.n > 0 {
		s.popLocked(sh, st, reason)
	}
}

func (s *Store) expireLocked(sh *shard, st *stream, now int64) {
	if st.ttl > 0 && st.n > 0 && now-st.last > st.ttl.Nanoseconds() {
		s.clearLocked(sh, st, EvictTTL)
	}
}

func (s *Store) dropStreamLocked(sh *shard, st *stream, reason string) {
	s.clearLocked(sh, st, "")
	sh.unlink(st)
	delete(sh.m, st.name)
	sh.bytes -= st.bytes
	s.bytes.Add(-st.bytes)
	s.streams.Add(-1)
	if reason != "" {
		s.evicted[evictIndex(reason)].Add(1)
	}
}

// enforceLocked keeps the shard within its budget: the least recently
// published streams lose their publications first, then whole idle
// streams go. keep (the stream being written) goes last.
func (s *Store) enforceLocked(sh *shard, keep *stream) {
	for sh.bytes > s.budget {
		victim := sh.lru.next
		for victim != &sh.lru && victim.n == 0 {
			victim = victim.next
		}
		if victim != &sh.lru && (victim != keep || keep.n > 1) {
			s.popLocked(sh, victim, EvictBudget)
			continue
		}
		// Only empty streams (and keep's one publication) remain.
		victim = sh.lru.next
		if victim == keep {
			victim = keep.next
		}
		if victim == &sh.lru {
			return // one stream alone over budget; it keeps its last publication
		}
		s.dropStreamLocked(sh, victim, EvictStream)
	}
}

func (sh *shard) pushBack(st *stream) {
	st.prev, st.next = sh.lru.prev, &sh.lru
	sh.lru.prev.next = st
	sh.lru.prev = st
}

func (sh *shard) unlink(st *stream) {
	st.prev.next, st.next.prev = st.next, st.prev
	st.prev, st.next = nil, nil
}

// touch moves st to the most recently published end.
func (sh *shard) touch(st *stream) {
	if sh.lru.prev == st {
		return
	}
	sh.unlink(st)
	sh.pushBack(st)
}
