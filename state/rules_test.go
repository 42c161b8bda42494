package state

import (
	"maps"
	"testing"
	"testing/synctest"

	"github.com/sccgo/sccgo/internal/nodelink"
	"github.com/sccgo/sccgo/protocol"
)

func withRules(d string) func(*nodelink.Peer) { return func(p *nodelink.Peer) { p.RulesDigest = d } }

// The state server's status shows each member's channel rules digest and,
// when connected members differ, flags the mismatch and the members whose
// digest is not the majority's; the gauge counts distinct digests.
func TestStatusShowsRulesDigestMismatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, testCfg())
		h.connect("b1", protocol.RoleBroker, withRules("aaa"))
		h.connect("f1", protocol.RoleFrontend, withRules("aaa"))
		f2 := h.connect("f2", protocol.RoleFrontend, withRules("aaa"))
		h.connect("f3", protocol.RoleFrontend) // an older node: no digest
		st := status(t, h)
		if st.RulesMismatch || st.RulesDigest != "aaa" || !maps.Equal(st.RulesDigests, map[string]int{"aaa": 3}) {
			t.Fatalf("equal rules: mismatch %v digest %q digests %v", st.RulesMismatch, st.RulesDigest, st.RulesDigests)
		}
		if got := value(h.m.rulesDigests); got != 1 {
			t.Fatalf("scc_state_rules_digests = %v with equal rules", got)
		}
		for _, m := range st.Members {
			if m.RulesDiffer {
				t.Fatalf("member %s flagged with equal rules", m.ID)
			}
		}

		h.disconnect(f2)
		h.connect("f2", protocol.RoleFrontend, withRules("bbb"))
		st = status(t, h)
		if !st.RulesMismatch || st.RulesDigest != "aaa" || !maps.Equal(st.RulesDigests, map[string]int{"aaa": 2, "bbb": 1}) {
			t.Fatalf("one differs: mismatch %v digest %q digests %v", st.RulesMismatch, st.RulesDigest, st.RulesDigests)
		}
		if got := value(h.m.rulesDigests); got != 2 {
			t.Fatalf("scc_state_rules_digests = %v with two digests", got)
		}
		differ := map[string]string{}
		for _, m := range st.Members {
			if m.RulesDiffer {
				differ[m.ID] = m.RulesDigest
			}
		}
		if !maps.Equal(differ, map[string]string{"f2": "bbb"}) {
			t.Fatalf("members flagged: %v, want f2 only", differ)
		}
	})
}
