package rules

import (
	"errors"
	"math/bits"
	"strings"
	"unicode/utf8"
)

type tokKind uint8

const (
	tokLit  tokKind = iota // literal text
	tokOne                 // ?
	tokStar                // *
	tokPh                  // {claim}
)

type token struct {
	kind tokKind
	lit  string // tokLit: the text; tokPh: the claim name
}

// pattern is a compiled glob. prefix and suffix are the literal text at its
// ends, checked first so that most rules reject a name in a few bytes.
type pattern struct {
	toks   []token
	prefix string
	suffix string
	exact  bool // only literal text: the name must equal prefix
	claims []string
}

var (
	errEmptyPattern   = errors.New("empty pattern")
	errTrailingEscape = errors.New("pattern ends with a lone \\")
	errOpenBrace      = errors.New("{ without a closing } (write \\{ for a literal brace)")
	errCloseBrace     = errors.New("} without an opening { (write \\} for a literal brace)")
	errClaimName      = errors.New("placeholder name must be letters, digits and _ and not start with a digit")
	errPlaceholderAdj = errors.New("a placeholder must sit between literal text or the pattern's ends, not next to *, ? or another placeholder")
)

// compilePattern parses a rule's match pattern. With placeholders false
// (the globs of a token's channels claim) braces are literal.
func compilePattern(s string, placeholders bool) (*pattern, error) {
	if s == "" {
		return nil, errEmptyPattern
	}
	var toks []token
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			toks = append(toks, token{kind: tokLit, lit: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\':
			if i+1 >= len(s) {
				return nil, errTrailingEscape
			}
			i++
			lit.WriteByte(s[i])
		case c == '*':
			flush()
			if n := len(toks); n == 0 || toks[n-1].kind != tokStar { // ** is *
				toks = append(toks, token{kind: tokStar})
			}
		case c == '?':
			flush()
			toks = append(toks, token{kind: tokOne})
		case c == '{' && placeholders:
			end := strings.IndexByte(s[i+1:], '}')
			if end < 0 {
				return nil, errOpenBrace
			}
			name := s[i+1 : i+1+end]
			if !validClaimName(name) {
				return nil, errClaimName
			}
			flush()
			toks = append(toks, token{kind: tokPh, lit: name})
			i += end + 1
		case c == '}' && placeholders:
			return nil, errCloseBrace
		default:
			lit.WriteByte(c)
		}
	}
	flush()
	p := &pattern{toks: toks}
	for i, t := range toks {
		if t.kind != tokPh {
			continue
		}
		if (i > 0 && toks[i-1].kind != tokLit) || (i+1 < len(toks) && toks[i+1].kind != tokLit) {
			return nil, errPlaceholderAdj
		}
		p.claims = append(p.claims, t.lit)
	}
	if len(toks) > 0 && toks[0].kind == tokLit {
		p.prefix = toks[0].lit
	}
	if len(toks) == 1 && toks[0].kind == tokLit {
		p.exact = true
	} else if n := len(toks); n > 1 && toks[n-1].kind == tokLit {
		p.suffix = toks[n-1].lit
	}
	return p, nil
}

func validClaimName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'):
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// selects reports whether the pattern's shape matches name, with each
// placeholder standing for one or more characters.
func (p *pattern) selects(name string) bool {
	if p.exact {
		return name == p.prefix
	}
	if !strings.HasPrefix(name, p.prefix) || !strings.HasSuffix(name, p.suffix) ||
		len(name) < len(p.prefix)+len(p.suffix) {
		return false
	}
	return p.run(name, nil, false)
}

// binds reports whether name matches with every placeholder replaced by
// the literal value of its claim, or one of the values of a list claim
// (see claimString). A claim without a usable value matches nothing.
func (p *pattern) binds(name string, claims map[string]any) bool {
	return p.run(name, claims, true)
}

// run matches name against the tokens by tracking the set of byte offsets
// the tokens so far can end at: O(tokens × len(name)), with no
// backtracking, so hostile names and patterns cannot blow it up. Without
// bind, placeholders match one or more bytes.
func (p *pattern) run(name string, claims map[string]any, bind bool) bool {
	n := len(name)
	words := n/64 + 1
	var bufA, bufB [8]uint64 // names up to 511 bytes stay on the stack
	var cur, next []uint64
	if words <= len(bufA) {
		cur, next = bufA[:words], bufB[:words]
	} else {
		cur, next = make([]uint64, words), make([]uint64, words)
	}
	cur[0] = 1 // offset 0
	for _, t := range p.toks {
		clear(next)
		hit := false
		switch t.kind {
		case tokStar, tokPh:
			lo := firstSet(cur)
			if lo < 0 {
				return false
			}
			if t.kind == tokPh && bind {
				try := func(v any) {
					s, ok := claimString(v)
					if !ok {
						return
					}
					forEach(cur, func(off int) {
						if strings.HasPrefix(name[off:], s) {
							setBit(next, off+len(s))
							hit = true
						}
					})
				}
				if l, ok := claims[t.lit].([]any); ok {
					for _, v := range l {
						try(v)
					}
				} else {
					try(claims[t.lit])
				}
				break
			}
			if t.kind == tokPh {
				lo++ // at least one byte
			}
			for i := lo; i <= n; i++ {
				setBit(next, i)
				hit = true
			}
		case tokOne:
			forEach(cur, func(off int) {
				if off < n {
					_, size := utf8.DecodeRuneInString(name[off:])
					setBit(next, off+size)
					hit = true
				}
			})
		case tokLit:
			forEach(cur, func(off int) {
				if strings.HasPrefix(name[off:], t.lit) {
					setBit(next, off+len(t.lit))
					hit = true
				}
			})
		}
		if !hit {
			return false
		}
		cur, next = next, cur
	}
	return cur[n/64]&(1<<(uint(n)%64)) != 0
}

func setBit(b []uint64, i int) { b[i/64] |= 1 << (uint(i) % 64) }

func firstSet(b []uint64) int {
	for w, v := range b {
		if v != 0 {
			return w*64 + bits.TrailingZeros64(v)
		}
	}
	return -1
}

func forEach(b []uint64, f func(int)) {
	for w, v := range b {
		for v != 0 {
			i := bits.TrailingZeros64(v)
			f(w*64 + i)
			v &= v - 1
		}
	}
}
