package presence

import (
	"sync"
	"sync/atomic"

	"github.com/cespare/xxhash/v2"

	"github.com/sccgo/sccgo/protocol"
)

// Member is one present client.
type Member = protocol.PresenceMember

// Stats are a channel's counts.
type Stats = protocol.PresenceStats

const tableShards = 64

// Table is the members of every presence channel, by source and client
// id. It is safe for concurrent use.
type Table struct {
	shards  [tableShards]tableShard
	members atomic.Int64

	srcMu sync.Mutex
	srcs  map[uint64]map[string]struct{} // source → channels it has members in
}

type tableShard struct {
	mu sync.RWMutex
	m  map[string]*channel
}

type key struct {
	src    uint64
	client string
}

type entry struct {
	src uint64
	m   Member
}

// channel is one channel's members: a dense list (for paging) with an
// index, and the number of members per user id (for unique users).
type channel struct {
	idx   map[key]int
	list  []entry
	users map[string]int
	bySrc map[uint64]int
	peak  int
}

// NewTable returns an empty table.
func NewTable() *Table {
	t := &Table{srcs: make(map[uint64]map[string]struct{})}
	for i := range t.shards {
		t.shards[i].m = make(map[string]*channel)
	}
	return t
}

func (t *Table) shard(ch string) *tableShard {
	return &t.shards[xxhash.Sum64String(ch)%tableShards]
}

// Len returns the number of members of every channel together.
func (t *Table) Len() int64 { return t.members.Load() }

// Join adds m to ch for src, or updates its user and info; it reports
// whether the member is new.
func (t *Table) Join(src uint64, ch string, m Member) bool {
	sh := t.shard(ch)
	sh.mu.Lock()
	c := sh.m[ch]
	if c == nil {
		c = &channel{idx: make(map[key]int), users: make(map[string]int), bySrc: make(map[uint64]int)}
		sh.m[ch] = c
	}
	k := key{src, m.Client}
	if i, ok := c.idx[k]; ok {
		old := c.list[i].m
		if old.User != m.User {
			c.unuser(old.User)
			c.user(m.User)
		}
		c.list[i].m = m
		sh.mu.Unlock()
		return false
	}
	c.idx[k] = len(c.list)
	c.list = append(c.list, entry{src: src, m: m})
	c.peak = max(c.peak, len(c.list))
	c.user(m.User)
	c.bySrc[src]++
	first := c.bySrc[src] == 1
	t.members.Add(1)
	if first {
		t.srcMu.Lock()
		set := t.srcs[src]
		if set == nil {
			set = make(map[string]struct{})
			t.srcs[src] = set
		}
		set[ch] = struct{}{}
		t.srcMu.Unlock()
	}
	sh.mu.Unlock()
	return true
}

func (c *channel) user(u string) {
	if u != "" {
		c.users[u]++
	}
}

func (c *channel) unuser(u string) {
	if u == "" {
		return
	}
	if c.users[u] <= 1 {
		delete(c.users, u)
		return
	}
	c.users[u]--
}

// Update replaces the user and info of src's client m.Client in ch; it
// reports false, and adds nothing, when the client is not a member.
func (t *Table) Update(src uint64, ch string, m Member) bool {
	sh := t.shard(ch)
	sh.mu.Lock()
	c := sh.m[ch]
	if c == nil {
		sh.mu.Unlock()
		return false
	}
	i, ok := c.idx[key{src, m.Client}]
	if ok {
		if old := c.list[i].m; old.User != m.User {
			c.unuser(old.User)
			c.user(m.User)
		}
		c.list[i].m = m
	}
	sh.mu.Unlock()
	return ok
}

// Leave removes src's client from ch and returns it; ok is false when it
// was not there.
func (t *Table) Leave(src uint64, ch, client string) (m Member, ok bool) {
	sh := t.shard(ch)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	c := sh.m[ch]
	if c == nil {
		return Member{}, false
	}
	m, ok = t.removeLocked(sh, ch, c, key{src, client})
	return m, ok
}

// removeLocked removes k from c (swap with the last entry); the caller
// holds sh.mu.
func (t *Table) removeLocked(sh *tableShard, ch string, c *channel, k key) (Member, bool) {
	i, ok := c.idx[k]
	if !ok {
		return Member{}, false
	}
	e := c.list[i]
	last := len(c.list) - 1
	if i != last {
		c.list[i] = c.list[last]
		c.idx[key{c.list[i].src, c.list[i].m.Client}] = i
	}
	c.list[last] = entry{}
	c.list = c.list[:last]
	delete(c.idx, k)
	c.unuser(e.m.User)
	t.members.Add(-1)
	if c.bySrc[k.src]--; c.bySrc[k.src] == 0 {
		delete(c.bySrc, k.src)
		t.srcMu.Lock()
		if set := t.srcs[k.src]; set != nil {
			delete(set, ch)
			if len(set) == 0 {
				delete(t.srcs, k.src)
			}
		}
		t.srcMu.Unlock()
	}
	switch {
	case len(c.list) == 0:
		delete(sh.m, ch)
	case c.peak >= 256 && len(c.list) < c.peak/4:
		// Go maps and slices never shrink: after a storm, rebuild small.
		c.list = append([]entry(nil), c.list...)
		idx := make(map[key]int, len(c.list))
		for j, e := range c.list {
			idx[key{e.src, e.m.Client}] = j
		}
		c.idx, c.peak = idx, len(c.list)
	}
	return e.m, true
}

// DropChannel removes every member src reported in ch and returns them.
func (t *Table) DropChannel(src uint64, ch string) []Member {
	sh := t.shard(ch)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	c := sh.m[ch]
	if c == nil || c.bySrc[src] == 0 {
		return nil
	}
	var ks []key
	for _, e := range c.list {
		if e.src == src {
			ks = append(ks, key{src, e.m.Client})
		}
	}
	out := make([]Member, 0, len(ks))
	for _, k := range ks {
		if m, ok := t.removeLocked(sh, ch, c, k); ok {
			out = append(out, m)
		}
	}
	return out
}

// DropSource removes every member src reported, in every channel, and
// returns them by channel.
func (t *Table) DropSource(src uint64) map[string][]Member {
	t.srcMu.Lock()
	set := t.srcs[src]
	chans := make([]string, 0, len(set))
	for ch := range set {
		chans = append(chans, ch)
	}
	t.srcMu.Unlock()
	out := make(map[string][]Member, len(chans))
	for _, ch := range chans {
		if ms := t.DropChannel(src, ch); len(ms) > 0 {
			out[ch] = ms
		}
	}
	return out
}

// Stats returns ch's counts in O(1).
func (t *Table) Stats(ch string) Stats {
	sh := t.shard(ch)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	c := sh.m[ch]
	if c == nil {
		return Stats{}
	}
	return Stats{Clients: len(c.list), Users: len(c.users)}
}

// Page returns up to limit members of ch from offset, the counts, and the
// offset of the next page (0 when this is the last). Pages are not a
// snapshot: members that join or leave between two calls may shift others
// across a page boundary.
func (t *Table) Page(ch string, offset, limit int) ([]Member, Stats, int) {
	sh := t.shard(ch)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	c := sh.m[ch]
	if c == nil {
		return nil, Stats{}, 0
	}
	st := Stats{Clients: len(c.list), Users: len(c.users)}
	if offset < 0 || offset >= len(c.list) || limit <= 0 {
		return nil, st, 0
	}
	end := min(len(c.list), offset+limit)
	out := make([]Member, 0, end-offset)
	for _, e := range c.list[offset:end] {
		out = append(out, e.m)
	}
	next := 0
	if end < len(c.list) {
		next = end
	}
	return out, st, next
}

// Source returns the members src reported in ch.
func (t *Table) Source(src uint64, ch string) []Member {
	sh := t.shard(ch)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	c := sh.m[ch]
	if c == nil || c.bySrc[src] == 0 {
		return nil
	}
	out := make([]Member, 0, c.bySrc[src])
	for _, e := range c.list {
		if e.src == src {
			out = append(out, e.m)
		}
	}
	return out
}
