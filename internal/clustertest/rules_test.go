package clustertest_test

import (
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sccgo/sccgo/broker"
	"github.com/sccgo/sccgo/frontend"
	"github.com/sccgo/sccgo/internal/clustertest"
	"github.com/sccgo/sccgo/internal/rules"
	"github.com/sccgo/sccgo/state"
)

func parseRules(t *testing.T, doc string) *rules.Set {
	t.Helper()
	set, err := rules.Parse([]byte(doc), rules.YAML)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// httpStatus reads the state server's /status over HTTP, as an operator
// would.
func httpStatus(t *testing.T, c *clustertest.Cluster) state.Status {
	t.Helper()
	ts := httptest.NewServer(c.State.AdminHandler())
	defer ts.Close()
	resp, err := http.Get(ts.URL + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st state.Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

// waitDigests waits until n connected members report a rules digest.
func waitDigests(t *testing.T, c *clustertest.Cluster, n int) {
	t.Helper()
	clustertest.WaitFor(t, 10*time.Second, "members reporting rules digests", func() bool {
		total := 0
		for _, k := range c.State.Status().RulesDigests {
			total += k
		}
		return total == n
	})
}

// Every node runs the same channel rules file: the state server shows one
// digest, no mismatch and no member flagged.
func TestChannelRulesDigestsAgree(t *testing.T) {
	set := parseRules(t, "rules:\n  - {match: \"user:{sub}\", subscribe: authenticated, publish: nobody}\n")
	c := clustertest.Start(t, clustertest.Options{Brokers: 1, Frontends: 2,
		Frontend: func(cfg *frontend.Config) { cfg.Rules = set },
		Broker:   func(cfg *broker.Config) { cfg.Rules = set },
	})
	waitDigests(t, c, 3)
	st := httpStatus(t, c)
	if st.RulesMismatch || st.RulesDigest != set.Digest() || !maps.Equal(st.RulesDigests, map[string]int{set.Digest(): 3}) {
		t.Fatalf("same rules everywhere: mismatch %v digest %s digests %v", st.RulesMismatch, st.RulesDigest, st.RulesDigests)
	}
	for _, m := range st.Members {
		if m.RulesDigest != set.Digest() || m.RulesDiffer {
			t.Fatalf("member %s: digest %q differ %v", m.ID, m.RulesDigest, m.RulesDiffer)
		}
	}
}

// One frontend runs other rules than the rest (which run the built-in
// default, as nodes without SCC_CHANNELS_FILE do): /status says so and
// names that frontend only.
func TestChannelRulesDigestMismatchShown(t *testing.T) {
	other := parseRules(t, "rules:\n  - {match: \"chat:*\", subscribe: authenticated, publish: authenticated}\n")
	var started atomic.Int32
	c := clustertest.Start(t, clustertest.Options{Brokers: 1, Frontends: 3,
		Frontend: func(cfg *frontend.Config) {
			if started.Add(1) == 3 { // frontend-3
				cfg.Rules = other
			}
		},
	})
	waitDigests(t, c, 4)
	st := httpStatus(t, c)
	def := rules.Default().Digest()
	if !st.RulesMismatch || st.RulesDigest != def || !maps.Equal(st.RulesDigests, map[string]int{def: 3, other.Digest(): 1}) {
		t.Fatalf("one frontend differs: mismatch %v digest %s digests %v", st.RulesMismatch, st.RulesDigest, st.RulesDigests)
	}
	differ := map[string]string{}
	for _, m := range st.Members {
		if m.RulesDiffer {
			differ[m.ID] = m.RulesDigest
		}
	}
	if !maps.Equal(differ, map[string]string{"frontend-3": other.Digest()}) {
		t.Fatalf("members flagged %v, want frontend-3 only", differ)
	}
}
