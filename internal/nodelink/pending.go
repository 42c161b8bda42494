package nodelink

import (
	"net"
	"sync"
)

// Pending counts the link handshakes an acceptor is running that have not
// yet proved the cluster key, in total and per source IP, so that hosts
// without the key cannot hold an unbounded number of them open. Share one
// per listening node through Config.Pending; the zero value is not usable,
// create one with NewPending.
type Pending struct {
	mu       sync.Mutex
	total    int
	bySource map[string]int
}

// NewPending returns an empty Pending.
func NewPending() *Pending {
	return &Pending{bySource: make(map[string]int)}
}

// acquire takes a slot for source if fewer than maxTotal handshakes are
// pending in all and fewer than maxPerSource from source; otherwise it
// returns the reason the handshake is refused. release gives the slot
// back.
func (p *Pending) acquire(source string, maxTotal, maxPerSource int) (release func(), reason string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.total >= maxTotal {
		return nil, ReasonPendingTotal
	}
	if p.bySource[source] >= maxPerSource {
		return nil, ReasonPendingSource
	}
	p.total++
	p.bySource[source]++
	var once sync.Once
	return func() {
		once.Do(func() {
			p.mu.Lock()
			defer p.mu.Unlock()
			p.total--
			if p.bySource[source]--; p.bySource[source] <= 0 {
				delete(p.bySource, source)
			}
		})
	}, ""
}

// Len returns how many handshakes are pending.
func (p *Pending) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.total
}

// sourceOf is the source a remote address is capped under: its IP.
func sourceOf(remoteAddr string) string {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		return remoteAddr
	}
	return host
}
