package broker

import (
	"slices"
	"sync"
	"sync/atomic"

	"github.com/cespare/xxhash/v2"
)

// interest maps a channel to the frontend links that hold it. It is
// sharded by channel hash; each shard's value slices are copy-on-write, so
// a publish takes a read lock only long enough to load one slice and fans
// out with no lock held.
type interest struct {
	shards   []interestShard
	channels atomic.Int64 // channels with at least one link
	pairs    atomic.Int64 // (link, channel) pairs
}

type interestShard struct {
	mu sync.RWMutex
	m  map[string][]*link
	_  [32]byte // keep hot shard locks off one cache line
}

func newInterest(shards int) *interest {
	t := &interest{shards: make([]interestShard, shards)}
	for i := range t.shards {
		t.shards[i].m = make(map[string][]*link)
	}
	return t
}

func (t *interest) shard(ch string) *interestShard {
	return &t.shards[xxhash.Sum64String(ch)%uint64(len(t.shards))]
}

// links returns the links interested in ch. The slice is shared and must
// not be modified.
func (t *interest) links(ch string) []*link {
	sh := t.shard(ch)
	sh.mu.RLock()
	ls := sh.m[ch]
	sh.mu.RUnlock()
	return ls
}

// add records that l holds ch; it reports whether that is new.
func (t *interest) add(ch string, l *link) bool {
	sh := t.shard(ch)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	old := sh.m[ch]
	if slices.Contains(old, l) {
		return false
	}
	n := make([]*link, len(old), len(old)+1)
	copy(n, old)
	sh.m[ch] = append(n, l)
	if len(old) == 0 {
		t.channels.Add(1)
	}
	t.pairs.Add(1)
	return true
}

// remove drops l's interest in ch; it reports whether there was one.
func (t *interest) remove(ch string, l *link) bool {
	sh := t.shard(ch)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	old := sh.m[ch]
	i := slices.Index(old, l)
	if i < 0 {
		return false
	}
	t.pairs.Add(-1)
	if len(old) == 1 {
		delete(sh.m, ch)
		t.channels.Add(-1)
		return true
	}
	n := make([]*link, 0, len(old)-1)
	n = append(n, old[:i]...)
	sh.m[ch] = append(n, old[i+1:]...)
	return true
}
