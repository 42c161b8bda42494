package rules

import (
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

// globRegexp is a reference translation of a placeholder-free pattern to
// a regular expression. It handles valid UTF-8 patterns only (regexp
// cannot spell a lone invalid byte).
func globRegexp(pat string) (*regexp.Regexp, bool) {
	var b strings.Builder
	b.WriteString(`\A`)
	rs := []rune(pat)
	for i := 0; i < len(rs); i++ {
		switch c := rs[i]; c {
		case '\\':
			if i+1 >= len(rs) {
				return nil, false
			}
			i++
			b.WriteString(regexp.QuoteMeta(string(rs[i])))
		case '*':
			b.WriteString(`(?s:.*)`)
		case '?':
			b.WriteString(`(?s:.)`)
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	b.WriteString(`\z`)
	re, err := regexp.Compile(b.String())
	return re, err == nil
}

// FuzzGlob checks the matcher against regexp on arbitrary patterns and
// names, and that nothing panics.
func FuzzGlob(f *testing.F) {
	for _, s := range [][2]string{
		{"room:*", "room:a"}, {"a?c", "abc"}, {`a\*`, "a*"}, {"*a*a*b", "aaaa"}, {"?", "é"},
		{"?", "\xff"}, {"a*", ""}, {`\\`, `\`}, {"x**y", "xzzy"}, {"", ""},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pat, name string) {
		if !utf8.ValidString(pat) {
			_, _ = compilePattern(pat, false) // must not panic
			return
		}
		p, err := compilePattern(pat, false)
		re, ok := globRegexp(pat)
		if (err == nil) != ok && pat != "" {
			t.Fatalf("pattern %q: compile error %v, reference ok %v", pat, err, ok)
		}
		if err != nil || !ok {
			return
		}
		if got, want := p.selects(name), re.MatchString(name); got != want {
			t.Fatalf("%q selects %q = %v, regexp says %v", pat, name, got, want)
		}
	})
}

// FuzzCheck feeds hostile channel names and claims to a rules set with
// placeholders: nothing panics, and a placeholder rule only ever grants
// the channel spelled exactly with the socket's claim.
func FuzzCheck(f *testing.F) {
	s, err := Parse([]byte(`
rules:
  - {match: "user:{sub}", subscribe: authenticated, publish: nobody}
  - {match: "team:{team}:*", subscribe: authenticated, publish: authenticated}
  - {match: "p:*:x:?", subscribe: token_channels, publish: anyone}
default: {subscribe: anyone, publish: anyone}
`), YAML)
	if err != nil {
		f.Fatal(err)
	}
	for _, c := range [][3]string{
		{"user:42", "42", "7"}, {"user:42*", "42", ""}, {"team:7:a", "1", "7"}, {"user:４２", "42", ""},
		{"#x", "", ""}, {"p:a:x:b", "", ""}, {"team:7*:a", "", "7*"}, {"user:", "", ""},
	} {
		f.Add(c[0], c[1], c[2])
	}
	f.Fuzz(func(t *testing.T, channel, sub, team string) {
		if s.Rule(channel) != linearRule(s, channel) {
			t.Fatalf("%q: the index chose rule %v, a linear scan %v", channel, s.Rule(channel), linearRule(s, channel))
		}
		who := Subject{Authenticated: true, Claims: map[string]any{"sub": sub, "team": team, "channels": []any{channel, sub}}}
		for _, op := range []Op{OpSubscribe, OpPublish} {
			d := s.Check(op, channel, who)
			if d.Allow == (d.Err != nil) && !d.NeedHook {
				t.Fatalf("%s %q: inconsistent decision %+v", op, channel, d)
			}
			if !d.Allow || d.Rule == nil {
				continue
			}
			switch d.Rule.Index {
			case 0:
				if channel != "user:"+sub {
					t.Fatalf("sub %q was granted %q", sub, channel)
				}
			case 1:
				if !strings.HasPrefix(channel, "team:"+team+":") {
					t.Fatalf("team %q was granted %q", team, channel)
				}
			}
			if IsReserved(channel) {
				t.Fatalf("reserved %q granted", channel)
			}
		}
	})
}

// FuzzParse: no input makes Parse panic, and what parses has a digest
// that parsing its own canonical form does not change.
func FuzzParse(f *testing.F) {
	f.Add([]byte(chatYAML))
	f.Add([]byte(`{"rules":[{"match":"a","subscribe":"anyone","publish":"anyone"}]}`))
	f.Add([]byte("default: {subscribe: nobody, publish: nobody}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, format := range []Format{YAML, JSON} {
			s, err := Parse(data, format)
			if err != nil {
				continue
			}
			if len(s.Digest()) != 64 {
				t.Fatalf("digest %q", s.Digest())
			}
			s.Check(OpSubscribe, "user:42", Subject{})
		}
	})
}
