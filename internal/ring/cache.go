package ring

import (
	"sync"

	"github.com/cespare/xxhash/v2"
)

// DefaultCacheEntries is the default bound on a Cache.
const DefaultCacheEntries = 1 << 16

const cacheShards = 16

// Cache memoizes channel owners for one ring at a time. Asking with a
// different ring than last time empties it. It is bounded: a shard that
// fills up is emptied and starts again, which costs only recomputation.
// It is safe for concurrent use.
type Cache struct {
	perShard int
	shards   [cacheShards]cacheShard
}

type cacheShard struct {
	mu     sync.Mutex
	ring   *Ring
	owners map[string]int
}

// NewCache returns a cache holding at most maxEntries owners (rounded to a
// multiple of 16); maxEntries <= 0 means DefaultCacheEntries.
func NewCache(maxEntries int) *Cache {
	if maxEntries <= 0 {
		maxEntries = DefaultCacheEntries
	}
	per := max(maxEntries/cacheShards, 1)
	return &Cache{perShard: per}
}

// OwnerIndex returns r.OwnerIndex(channel), from the cache when it can.
func (c *Cache) OwnerIndex(r *Ring, channel string) int {
	if r.Len() <= 1 {
		return r.OwnerIndex(channel)
	}
	h := xxhash.Sum64String(channel)
	sh := &c.shards[h%cacheShards]
	sh.mu.Lock()
	if sh.ring != r {
		sh.ring = r
		clear(sh.owners)
	}
	if i, ok := sh.owners[channel]; ok {
		sh.mu.Unlock()
		return i
	}
	sh.mu.Unlock()
	i := r.ownerOfHash(h)
	sh.mu.Lock()
	if sh.ring == r {
		if sh.owners == nil {
			sh.owners = make(map[string]int)
		}
		if len(sh.owners) >= c.perShard {
			clear(sh.owners)
		}
		sh.owners[channel] = i
	}
	sh.mu.Unlock()
	return i
}
