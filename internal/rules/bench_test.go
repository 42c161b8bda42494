package rules

import (
	"fmt"
	"strings"
	"testing"
)

// benchRules is 100 rules of the usual shapes: prefixes, exact names and
// placeholders, then user:{sub} last, then a default.
func benchRules(b *testing.B) *Set {
	var d strings.Builder
	d.WriteString("rules:\n")
	for i := range 99 {
		switch i % 3 {
		case 0:
			fmt.Fprintf(&d, "  - {match: \"ns%d:*\", subscribe: anyone, publish: authenticated}\n", i)
		case 1:
			fmt.Fprintf(&d, "  - {match: \"exact%d\", subscribe: authenticated, publish: nobody}\n", i)
		case 2:
			fmt.Fprintf(&d, "  - {match: \"org%d:{org}:*\", subscribe: authenticated, publish: authenticated}\n", i)
		}
	}
	d.WriteString("  - {match: \"user:{sub}\", subscribe: authenticated, publish: nobody}\n")
	d.WriteString("default: {subscribe: anyone, publish: nobody}\n")
	return mustParse(b, d.String())
}

func benchCheck(b *testing.B, s *Set, ch string, who Subject, want bool) {
	if d := s.Check(OpSubscribe, ch, who); d.Allow != want {
		b.Fatalf("%q: %s", ch, outcome(d))
	}
	b.ReportAllocs()
	for b.Loop() {
		s.Check(OpSubscribe, ch, who)
	}
}

// BenchmarkCheck measures the cost of rules on the subscribe path with 100
// rules: the first rule, the last rule with a placeholder bound to the
// socket's sub (every rule tried), the default (no rule matches), and the
// first rules with no file.
func BenchmarkCheck(b *testing.B) {
	s := benchRules(b)
	b.Run("first-rule", func(b *testing.B) { benchCheck(b, s, "ns0:lobby", sub42, true) })
	b.Run("middle-placeholder", func(b *testing.B) {
		benchCheck(b, s, "org50:acme:general", user(map[string]any{"sub": "42", "org": "acme"}), true)
	})
	b.Run("last-rule-placeholder", func(b *testing.B) { benchCheck(b, s, "user:42", sub42, true) })
	b.Run("default", func(b *testing.B) { benchCheck(b, s, "nomatch:channel:name", sub42, true) })
	b.Run("no-file", func(b *testing.B) { benchCheck(b, Default(), "user:42", sub42, true) })

	// The worst case for the index: every rule starts with a wildcard,
	// so every one is tried.
	var d strings.Builder
	d.WriteString("rules:\n")
	for i := range 100 {
		fmt.Fprintf(&d, "  - {match: \"*:kind%d\", subscribe: anyone, publish: nobody}\n", i)
	}
	d.WriteString("default: {subscribe: anyone, publish: nobody}\n")
	wild := mustParse(b, d.String())
	b.Run("all-wildcard-default", func(b *testing.B) { benchCheck(b, wild, "some:channel:name", sub42, true) })
}
