package rules

import (
	"fmt"
	"time"
)

// WithDefaultHistory returns a copy of s whose default rule keeps size
// publications for ttl with recovery on: the history of every channel no
// rule matches, for servers run without a channels file
// (SCC_HISTORY_SIZE, SCC_HISTORY_TTL). size 0 returns s.
func (s *Set) WithDefaultHistory(size int, ttl time.Duration) (*Set, error) {
	if size == 0 {
		return s, nil
	}
	if size < 0 || ttl <= 0 {
		return nil, &Error{Rule: -1, Field: "history", Msg: fmt.Sprintf("size %d and ttl %v must be positive", size, ttl)}
	}
	c := *s
	c.def.Options.History = History{Size: size, TTL: Duration(ttl)}
	c.def.Options.Recovery = true
	c.digest = c.computeDigest()
	return &c, nil
}
