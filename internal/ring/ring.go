package ring

import (
	"slices"
	"strconv"
	"strings"

	"github.com/cespare/xxhash/v2"

	"github.com/sccgo/sccgo/protocol"
)

// Ring is an immutable broker set at a version. The zero value and nil are
// empty rings that own nothing.
type Ring struct {
	version uint64
	brokers []protocol.BrokerInfo // sorted by ID, unique IDs
	seeds   []uint64              // seeds[i] = xxhash(brokers[i].ID)
}

// New returns the ring of brokers at version. The brokers are sorted by ID
// and deduplicated (the first entry of an ID wins), so the result depends
// only on the set; the caller's slice is not kept.
func New(version uint64, brokers []protocol.BrokerInfo) *Ring {
	bs := make([]protocol.BrokerInfo, 0, len(brokers))
	for _, b := range brokers {
		bs = append(bs, protocol.BrokerInfo{ID: b.ID, Addr: b.Addr})
	}
	slices.SortStableFunc(bs, func(a, b protocol.BrokerInfo) int { return strings.Compare(a.ID, b.ID) })
	bs = slices.CompactFunc(bs, func(a, b protocol.BrokerInfo) bool { return a.ID == b.ID })
	return build(version, bs)
}

// FromProtocol returns the ring that a protocol.Ring message describes.
func FromProtocol(r protocol.Ring) *Ring { return New(r.Version, r.Brokers) }

// build takes ownership of bs, which must be sorted and unique.
func build(version uint64, bs []protocol.BrokerInfo) *Ring {
	seeds := make([]uint64, len(bs))
	for i, b := range bs {
		seeds[i] = xxhash.Sum64String(b.ID)
	}
	return &Ring{version: version, brokers: bs, seeds: seeds}
}

// mix is a 64-bit finalizer (moremur): a bijection with full avalanche, so
// the scores of one channel at different brokers behave as independent.
func mix(x uint64) uint64 {
	x ^= x >> 27
	x *= 0x3C79AC492BA7B653
	x ^= x >> 33
	x *= 0x1C69B3F74AC4AE35
	x ^= x >> 27
	return x
}

// score is broker i's weight for a channel whose xxhash is h.
func score(h, seed uint64) uint64 { return mix(h ^ seed) }

// Version returns the ring's version (0 for an empty ring).
func (r *Ring) Version() uint64 {
	if r == nil {
		return 0
	}
	return r.version
}

// Len returns the number of brokers.
func (r *Ring) Len() int {
	if r == nil {
		return 0
	}
	return len(r.brokers)
}

// Brokers returns a copy of the brokers, sorted by ID.
func (r *Ring) Brokers() []protocol.BrokerInfo {
	if r == nil {
		return nil
	}
	return slices.Clone(r.brokers)
}

// Broker returns the i-th broker in ID order.
func (r *Ring) Broker(i int) protocol.BrokerInfo { return r.brokers[i] }

// Index returns the position of the broker with id, or -1.
func (r *Ring) Index(id string) int {
	if r == nil {
		return -1
	}
	i, ok := slices.BinarySearchFunc(r.brokers, id, func(b protocol.BrokerInfo, id string) int { return strings.Compare(b.ID, id) })
	if !ok {
		return -1
	}
	return i
}

// Contains reports whether a broker with id is in the ring.
func (r *Ring) Contains(id string) bool { return r.Index(id) >= 0 }

// OwnerIndex returns the index (in ID order) of the broker that owns
// channel, or -1 if the ring is empty.
func (r *Ring) OwnerIndex(channel string) int {
	if r == nil || len(r.brokers) == 0 {
		return -1
	}
	return r.ownerOfHash(xxhash.Sum64String(channel))
}

// ownerOfHash is OwnerIndex for a channel whose xxhash is h; the ring must
// not be empty.
func (r *Ring) ownerOfHash(h uint64) int {
	best, bestScore := 0, score(h, r.seeds[0])
	for i := 1; i < len(r.seeds); i++ {
		// Ties (astronomically rare) go to the lower ID, which keeps the
		// result independent of anything but the set.
		if s := score(h, r.seeds[i]); s > bestScore {
			best, bestScore = i, s
		}
	}
	return best
}

// StandbyIndex returns the index (in ID order) of the broker that ranks
// highest for channel after the broker with id skip, or -1 if there is
// none. With skip the owner, it is the channel's standby: the broker that
// owns the channel once the owner is removed (rendezvous hashing ranks
// every broker, and removing one leaves the others' order unchanged).
func (r *Ring) StandbyIndex(channel, skip string) int {
	if r == nil {
		return -1
	}
	h := xxhash.Sum64String(channel)
	best := -1
	var bestScore uint64
	for i, seed := range r.seeds {
		if r.brokers[i].ID == skip {
			continue
		}
		if s := score(h, seed); best < 0 || s > bestScore {
			best, bestScore = i, s
		}
	}
	return best
}

// Owner returns the broker that owns channel; ok is false if the ring is
// empty.
func (r *Ring) Owner(channel string) (b protocol.BrokerInfo, ok bool) {
	i := r.OwnerIndex(channel)
	if i < 0 {
		return protocol.BrokerInfo{}, false
	}
	return r.brokers[i], true
}

// OwnerID returns the ID of the broker that owns channel, or "" if the ring
// is empty.
func (r *Ring) OwnerID(channel string) string {
	i := r.OwnerIndex(channel)
	if i < 0 {
		return ""
	}
	return r.brokers[i].ID
}

// Without returns the ring minus the brokers with the given IDs, at the same
// version. Every node that removes the same dead brokers from the same ring
// gets the same result. It returns r itself if none of ids is in it.
func (r *Ring) Without(ids ...string) *Ring {
	if r == nil {
		return nil
	}
	drop := false
	for _, id := range ids {
		if r.Contains(id) {
			drop = true
			break
		}
	}
	if !drop {
		return r
	}
	bs := make([]protocol.BrokerInfo, 0, len(r.brokers))
	for _, b := range r.brokers {
		if !slices.Contains(ids, b.ID) {
			bs = append(bs, b)
		}
	}
	return build(r.version, bs)
}

// Equal reports whether r and o have the same version and the same brokers
// (IDs and addresses).
func (r *Ring) Equal(o *Ring) bool {
	return r.Version() == o.Version() && r.SameBrokers(o)
}

// SameBrokers reports whether r and o hold the same brokers (IDs and
// addresses), whatever their versions.
func (r *Ring) SameBrokers(o *Ring) bool {
	var a, b []protocol.BrokerInfo
	if r != nil {
		a = r.brokers
	}
	if o != nil {
		b = o.brokers
	}
	return slices.EqualFunc(a, b, func(x, y protocol.BrokerInfo) bool { return x.ID == y.ID && x.Addr == y.Addr })
}

// Protocol returns the ring as a protocol.Ring message.
func (r *Ring) Protocol() protocol.Ring {
	return protocol.Ring{Version: r.Version(), Brokers: r.Brokers()}
}

// String describes the ring for logs.
func (r *Ring) String() string {
	var sb strings.Builder
	sb.WriteString("v")
	sb.WriteString(strconv.FormatUint(r.Version(), 10))
	sb.WriteString("[")
	for i := 0; i < r.Len(); i++ {
		if i > 0 {
			sb.WriteString(",")
		}
		sb.WriteString(r.brokers[i].ID)
	}
	sb.WriteString("]")
	return sb.String()
}
