package broker

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/sccgo/sccgo/internal/nodelink"
	"github.com/sccgo/sccgo/internal/rules"
)

// A broker holds the channel rules it was given: their digest is exported
// and returned, and ChannelOptions returns the governing rule's options.
// Without rules it reports the built-in default's digest.
func TestBrokerChannelRules(t *testing.T) {
	set, err := rules.Parse([]byte(`rules:
  - {match: "chat:*", subscribe: authenticated, publish: authenticated, history: {size: 20, ttl: 1m}, presence: true}
`), rules.YAML)
	if err != nil {
		t.Fatal(err)
	}
	b := startBroker(t, func(c *Config) { c.Rules = set })
	if b.RulesDigest() != set.Digest() || set.Digest() == rules.Default().Digest() {
		t.Fatalf("RulesDigest %s, want %s (not the default's)", b.RulesDigest(), set.Digest())
	}
	if got := b.metric("scc_broker_channel_rules_info", "digest", set.Digest()); got != 1 {
		t.Fatalf("scc_broker_channel_rules_info{digest=%s} = %v, want 1", set.Digest(), got)
	}
	if o := b.ChannelOptions("chat:7"); o.History.Size != 20 || !o.Presence {
		t.Fatalf("chat:7 options %+v", o)
	}
	if o := b.ChannelOptions("news"); o.History.Size != 0 || o.Presence {
		t.Fatalf("news options %+v, want the default rule's", o)
	}

	d := startBroker(t, nil)
	if d.RulesDigest() != rules.Default().Digest() {
		t.Fatalf("no rules: digest %s, want the default's %s", d.RulesDigest(), rules.Default().Digest())
	}
	if got := d.metric("scc_broker_channel_rules_info", "digest", rules.Default().Digest()); got != 1 {
		t.Fatalf("no rules: channel_rules_info = %v", got)
	}
}

// lockedBuffer is a bytes.Buffer a logger and a test can share.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A frontend whose link Hello carries another rules digest than the
// broker's is named in a warning; one with the same digest, or none (an
// older frontend), is not.
func TestBrokerWarnsOfFrontendWithOtherRules(t *testing.T) {
	var logs lockedBuffer
	b := startBroker(t, func(c *Config) { c.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
	dial := func(id, digest string) {
		cfg := feConfig(id)
		if digest != "" {
			cfg.RulesDigest = func() string { return digest }
		}
		l, err := nodelink.Dial(context.Background(), b.addr(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		f := &fakeFE{t: t, l: l, id: id}
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = l.Run(f)
		}()
		t.Cleanup(func() {
			l.Close("test")
			<-done
		})
	}
	dial("fe-same", b.RulesDigest())
	dial("fe-old", "")
	dial("fe-other", "0123abcd")
	waitFor(t, "three links up", func() bool { return strings.Count(logs.String(), "frontend link up") == 3 })
	waitFor(t, "warning for fe-other", func() bool {
		return strings.Contains(logs.String(), "frontend runs different channel rules")
	})
	out := logs.String()
	if n := strings.Count(out, "frontend runs different channel rules"); n != 1 || !strings.Contains(out, "peer=fe-other peer_digest=0123abcd") {
		t.Fatalf("%d warnings, want one for fe-other:\n%s", n, out)
	}
}
