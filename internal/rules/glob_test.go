package rules

import (
	"strings"
	"testing"
)

func TestPatternSelects(t *testing.T) {
	cases := []struct {
		pat, name string
		want      bool
	}{
		{"room", "room", true},
		{"room", "room2", false},
		{"room", "roo", false},
		{"room:*", "room:", true},
		{"room:*", "room:a:b", true},
		{"room:*", "room", false},
		{"*", "", true},
		{"*", "anything:at/all", true},
		{"a*b*c", "abc", true},
		{"a*b*c", "axxbyyc", true},
		{"a*b*c", "axxbyy", false},
		{"a?c", "abc", true},
		{"a?c", "ac", false},
		{"a?c", "aéc", true}, // ? is one code point, not one byte
		{"a??c", "aéc", false},
		{`a\*`, "a*", true},
		{`a\*`, "ab", false},
		{`a\?b`, "a?b", true},
		{`a\?b`, "axb", false},
		{`\{sub\}`, "{sub}", true},
		{`a\\b`, `a\b`, true},
		{"**x", "yx", true},
		{"*a*a*a*a*a*a*a*a*b", strings.Repeat("a", 300), false}, // no exponential backtracking
		{"*a*a*a*a*a*a*a*a*b", strings.Repeat("a", 300) + "b", true},
		{"user:{sub}", "user:42", true},
		{"user:{sub}", "user:", false}, // a placeholder is one or more characters
		{"user:{sub}", "user", false},
		{"team:{teams}:chat", "team:7:chat", true},
		{"team:{teams}:chat", "team::chat", false},
		{"team:{teams}:chat", "team:7:chatx", false},
		{"x:" + strings.Repeat("a", 600), "x:" + strings.Repeat("a", 600), true},
		{"x:*b", "x:" + strings.Repeat("a", 600) + "b", true}, // past the stack buffer
	}
	for _, c := range cases {
		p, err := compilePattern(c.pat, true)
		if err != nil {
			t.Fatalf("compile %q: %v", c.pat, err)
		}
		if got := p.selects(c.name); got != c.want {
			t.Errorf("%q selects %q = %v, want %v", c.pat, c.name, got, c.want)
		}
	}
}

func TestPatternCompileErrors(t *testing.T) {
	for pat, want := range map[string]error{
		"":             errEmptyPattern,
		`a\`:           errTrailingEscape,
		"user:{sub":    errOpenBrace,
		"user:sub}":    errCloseBrace,
		"user:{}":      errClaimName,
		"user:{1x}":    errClaimName,
		"user:{a-b}":   errClaimName,
		"user:{sub}*":  errPlaceholderAdj,
		"user:*{sub}":  errPlaceholderAdj,
		"user:?{sub}":  errPlaceholderAdj,
		"{a}{b}":       errPlaceholderAdj,
		"user:{sub}?":  errPlaceholderAdj,
		"{sub}:x:{id}": nil,
		"{sub}":        nil,
	} {
		_, err := compilePattern(pat, true)
		if err != want {
			t.Errorf("compile %q: err %v, want %v", pat, err, want)
		}
	}
}

func TestPatternBinds(t *testing.T) {
	vals := func(m map[string][]string) map[string]any {
		c := map[string]any{}
		for k, v := range m {
			l := make([]any, len(v))
			for i, s := range v {
				l[i] = s
			}
			c[k] = l
		}
		return c
	}
	cases := []struct {
		pat, name string
		claims    map[string][]string
		want      bool
	}{
		{"user:{sub}", "user:42", map[string][]string{"sub": {"42"}}, true},
		{"user:{sub}", "user:43", map[string][]string{"sub": {"42"}}, false},
		{"user:{sub}", "user:42", nil, false},
		{"user:{sub}", "user:42", map[string][]string{"sub": {""}}, false},
		{"team:{teams}:*", "team:7:chat", map[string][]string{"teams": {"3", "7"}}, true},
		{"team:{teams}:*", "team:8:chat", map[string][]string{"teams": {"3", "7"}}, false},
		// A claim value is literal text, never a pattern.
		{"user:{sub}", "user:42", map[string][]string{"sub": {"*"}}, false},
		{"user:{sub}", "user:42", map[string][]string{"sub": {"4?"}}, false},
		{"user:{sub}", "user:4?", map[string][]string{"sub": {"4?"}}, true},
		{"{sub}:x:{id}", "1:x:2", map[string][]string{"sub": {"1"}, "id": {"2"}}, true},
		{"{sub}:x:{id}", "1:x:2", map[string][]string{"sub": {"1"}, "id": {"3"}}, false},
	}
	for _, c := range cases {
		p, err := compilePattern(c.pat, true)
		if err != nil {
			t.Fatal(err)
		}
		if got := p.binds(c.name, vals(c.claims)); got != c.want {
			t.Errorf("%q binds %q with %v = %v, want %v", c.pat, c.name, c.claims, got, c.want)
		}
	}
}
