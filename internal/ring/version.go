package ring

import (
	"errors"
	"fmt"
)

// MaxVersion is the highest ring version any node accepts or commits.
// Committing one ring a millisecond, a cluster takes over a hundred
// million years to reach it, so a version above it is never legitimate,
// and the state server's next version (at most MaxVersion+1) cannot wrap.
const MaxVersion = 1 << 62

// DefaultMaxVersionStep is the default bound on how far a received ring
// version may jump above the one held: a million commits, more than any
// partition can miss.
const DefaultMaxVersionStep = 1 << 20

// Errors CheckVersion returns.
var (
	ErrVersionCeiling = errors.New("ring version above the ceiling")
	ErrVersionJump    = errors.New("ring version jumps too far ahead")
)

// Reasons for refused ring versions, bounded metric labels.
const (
	ReasonVersionCeiling = "version_ceiling"
	ReasonVersionJump    = "version_jump"
)

// CheckVersion reports whether a ring version v received from a peer may
// replace the version held (has: whether one is held): v must not exceed
// MaxVersion, nor held+maxStep when one is held (maxStep 0 means
// DefaultMaxVersionStep). A node with no version yet has no reference, so
// only the ceiling applies. Versions at or below held pass; callers decide
// whether an older ring matters.
func CheckVersion(held uint64, has bool, v, maxStep uint64) error {
	if maxStep == 0 {
		maxStep = DefaultMaxVersionStep
	}
	if v > MaxVersion {
		return fmt.Errorf("%w: %d > %d", ErrVersionCeiling, v, uint64(MaxVersion))
	}
	if has && v > held && v-held > maxStep {
		return fmt.Errorf("%w: %d after %d (at most %d ahead)", ErrVersionJump, v, held, maxStep)
	}
	return nil
}

// VersionReason returns the metric reason for an error of CheckVersion.
func VersionReason(err error) string {
	if errors.Is(err, ErrVersionCeiling) {
		return ReasonVersionCeiling
	}
	return ReasonVersionJump
}
