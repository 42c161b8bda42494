package rules

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/sccgo/sccgo/protocol"
)

func mustParse(t testing.TB, doc string) *Set {
	t.Helper()
	s, err := Parse([]byte(doc), YAML)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var (
	anon  = Subject{}
	user  = func(claims map[string]any) Subject { return Subject{Authenticated: true, Claims: claims} }
	sub42 = user(map[string]any{"sub": "42"})
)

// outcome is a compact form of a Decision for tables.
func outcome(d Decision) string {
	switch {
	case d.Allow:
		return "allow"
	case d.NeedHook:
		return "hook"
	case d.Err != nil:
		return "deny:" + string(d.Reason)
	}
	return "?"
}

func TestCheckNoFileAllowsAll(t *testing.T) {
	s := Default()
	for _, ch := range []string{"room", "user:42", "x"} {
		for _, op := range []Op{OpSubscribe, OpPublish} {
			if d := s.Check(op, ch, anon); !d.Allow {
				t.Errorf("%s %q: %v", op, ch, outcome(d))
			}
		}
	}
	// Reserved names stay closed even without a file.
	for _, ch := range []string{"#", "#publish", InternalPrefix + "user:42"} {
		d := s.Check(OpSubscribe, ch, sub42)
		if d.Allow || d.Reason != ReasonReserved || d.Rule != nil {
			t.Errorf("subscribe %q: %v", ch, outcome(d))
		}
	}
}

func TestCheckChatRules(t *testing.T) {
	s := mustParse(t, chatYAML)
	teams := user(map[string]any{"sub": 42.0, "teams": []any{3.0, "7"}})
	project := user(map[string]any{"sub": "9", "channels": []any{"project:apollo", "project:gemini:*"}})
	cases := []struct {
		op   Op
		ch   string
		who  Subject
		want string
	}{
		{OpSubscribe, "room:lobby", anon, "allow"},
		{OpPublish, "room:lobby", anon, "deny:unauthenticated"},
		{OpPublish, "room:lobby", sub42, "allow"},
		{OpSubscribe, "user:42", anon, "deny:unauthenticated"},
		{OpSubscribe, "user:42", sub42, "allow"},
		{OpSubscribe, "user:42", user(map[string]any{"sub": "43"}), "deny:claim"},
		{OpSubscribe, "user:42", user(map[string]any{"sub": 42.0}), "allow"}, // numbers by canonical form
		{OpSubscribe, "user:42", user(map[string]any{"sub": json.Number("42")}), "allow"},
		{OpSubscribe, "user:42", user(map[string]any{"sub": json.Number("4.2e1")}), "allow"},
		{OpSubscribe, "user:42", user(map[string]any{"sub": 42.5}), "deny:claim"},
		{OpSubscribe, "user:42", user(map[string]any{"sub": true}), "deny:claim"},
		{OpSubscribe, "user:42", user(map[string]any{}), "deny:claim"},
		{OpSubscribe, "user:42", Subject{Claims: map[string]any{"sub": "42"}}, "deny:unauthenticated"}, // claims of an unauthenticated socket do not count
		{OpPublish, "user:42", sub42, "deny:nobody"},
		{OpPublish, "room:lobby", Subject{Authenticated: true}, "allow"}, // a token with no claims
		{OpSubscribe, "user:42", Subject{Authenticated: true}, "deny:claim"},
		// A subscription token used as an auth token authenticates nothing.
		{OpPublish, "room:lobby", user(map[string]any{"channel": "live:1", "exp": 1e12}), "deny:unauthenticated"},
		{OpSubscribe, "user:42", user(map[string]any{"channel": "live:1", "sub": "42"}), "deny:unauthenticated"},
		{OpSubscribe, "team:7:chat", teams, "allow"},
		{OpSubscribe, "team:3:chat", teams, "allow"},
		{OpSubscribe, "team:4:chat", teams, "deny:claim"},
		{OpPublish, "team:7:chat", teams, "allow"},
		{OpSubscribe, "team:7:chat", sub42, "deny:claim"},
		{OpSubscribe, "project:apollo", project, "allow"},
		{OpSubscribe, "project:gemini:docs", project, "allow"},
		{OpSubscribe, "project:mercury", project, "deny:token_channels"},
		{OpSubscribe, "project:apollo", sub42, "deny:token_channels"},
		{OpSubscribe, "project:apollo", anon, "deny:unauthenticated"},
		{OpSubscribe, "project:apollo", user(map[string]any{"channels": "project:apollo"}), "allow"},
		{OpSubscribe, "project:apollo", user(map[string]any{"channels": []any{"project:*"}}), "allow"},
		{OpSubscribe, "project:apollo", user(map[string]any{"channels": []any{42.0, nil, map[string]any{}}}), "deny:token_channels"},
		{OpSubscribe, "moderated:x", anon, "allow"},
		{OpPublish, "moderated:x", anon, "hook"},
		{OpSubscribe, "notifications", sub42, "allow"},
		{OpPublish, "notifications", sub42, "deny:nobody"},
		{OpSubscribe, "elsewhere", sub42, "deny:nobody"},
		{OpSubscribe, "#room:lobby", sub42, "deny:reserved"},
		{OpPublish, "#scc:user:42", sub42, "deny:reserved"},
	}
	for _, c := range cases {
		d := s.Check(c.op, c.ch, c.who)
		if got := outcome(d); got != c.want {
			t.Errorf("%s %q as %v: %s, want %s", c.op, c.ch, c.who.Claims, got, c.want)
		}
		if d.Err != nil {
			want := protocol.ErrNameSubscribeBlocked
			if c.op == OpPublish {
				want = protocol.ErrNamePublishBlocked
			}
			if d.Err.Name != want || d.Err.Message == "" {
				t.Errorf("%s %q: error %+v, want name %s", c.op, c.ch, d.Err, want)
			}
		}
	}
}

// Hostile channel names that try to reach user 42's channel, or any other
// user's, from a socket whose sub is 42 or someone else.
func TestCheckHostileNames(t *testing.T) {
	s := mustParse(t, `
rules:
  - match: "user:{sub}"
    subscribe: authenticated
    publish: authenticated
  - match: "team:{teams}:*"
    subscribe: authenticated
    publish: authenticated
default: {subscribe: anyone, publish: anyone}
`)
	sub43 := user(map[string]any{"sub": "43"})
	hostile := []string{
		"user:42*", "user:4*", "user:*", "user:4?", "user:??", "user:4[2]",
		`user:4\2`, `user:42\`, `user:\42`, "user:{sub}", "user:%34%32", "user:42%00",
		"user:42\x00", "user:\x0042", "user:42 ", "user: 42", "user:042", "user:+42", "user:42.0",
		"user:４２",           // fullwidth digits
		"user:4\u200b2",     // zero-width space
		"user:42\u0301",     // combining accent after the value
		"user:\u0664\u0662", // Arabic-Indic digits
		"user:42:x", "user:42/x",
		"user:" + string([]byte{0xff, 0xfe}),
		"user:ca\u0301fe", // NFD of café
	}
	for _, ch := range hostile {
		if r := s.Rule(ch); r.Index != 0 {
			t.Fatalf("%q escaped the user rule to rule %d", ch, r.Index)
		}
		for _, op := range []Op{OpSubscribe, OpPublish} {
			for name, who := range map[string]Subject{"sub42": sub42, "sub43": sub43, "anon": anon} {
				d := s.Check(op, ch, who)
				if d.Allow || d.NeedHook {
					t.Errorf("%s %q as %s: allowed", op, ch, name)
				}
			}
		}
	}
	// Names that differ only in case, spacing or lookalike letters are
	// other channels: the default rule's, never user 42's.
	for _, ch := range []string{"USER:42", " user:42", "uſer:42", "user\u200b:42"} {
		if r := s.Rule(ch); r.Index != -1 {
			t.Errorf("%q chose rule %d, want the default", ch, r.Index)
		}
	}
	// The NFC and NFD spellings of one name are different users.
	nfc := user(map[string]any{"sub": "caf\u00e9"})
	if d := s.Check(OpSubscribe, "user:caf\u00e9", nfc); !d.Allow {
		t.Errorf("own NFC channel: %s", outcome(d))
	}
	if d := s.Check(OpSubscribe, "user:cafe\u0301", nfc); d.Allow {
		t.Error("NFD spelling matched the NFC claim")
	}
	// A claim that looks like a pattern matches only itself.
	star := user(map[string]any{"sub": "*"})
	for _, ch := range []string{"user:42", "user:x"} {
		if d := s.Check(OpSubscribe, ch, star); d.Allow {
			t.Errorf("sub %q reached %q", "*", ch)
		}
	}
	if d := s.Check(OpSubscribe, "user:*", star); !d.Allow {
		t.Errorf("sub * on its own channel: %s", outcome(d))
	}
	// A list claim binds each element, literally.
	teams := user(map[string]any{"teams": []any{"7", "7*", 8.0}})
	for ch, want := range map[string]bool{
		"team:7:chat": true, "team:8:chat": true, "team:7*:chat": true,
		"team:77:chat": false, "team:9:chat": false, "team:7:": true, "team:7x:chat": false,
	} {
		if d := s.Check(OpSubscribe, ch, teams); d.Allow != want {
			t.Errorf("teams %q: %s, want allow=%v", ch, outcome(d), want)
		}
	}
}

func signedFake(claims map[string]any) string {
	b, _ := json.Marshal(claims)
	return string(b)
}

// fakeVerify stands in for the frontend's JWT verifier: a token is its
// claims in JSON, "bad" fails verification.
func fakeVerify(tok string) (map[string]any, error) {
	if tok == "bad" {
		return nil, errors.New("invalid signature")
	}
	var c map[string]any
	if err := json.Unmarshal([]byte(tok), &c); err != nil {
		return nil, err
	}
	return c, nil
}

func TestCheckSubscriptionToken(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s := mustParse(t, chatYAML).WithVerifier(fakeVerify).WithClock(func() time.Time { return now })
	exp := float64(now.Unix() + 60)
	data := func(claims map[string]any) json.RawMessage {
		b, _ := json.Marshal(map[string]any{"token": signedFake(claims)})
		return b
	}
	cases := []struct {
		name string
		who  Subject
		ch   string
		want string
	}{
		{"valid anonymous", Subject{SubscribeData: data(map[string]any{"channel": "live:1", "exp": exp})}, "live:1", "allow"},
		{"other channel", Subject{SubscribeData: data(map[string]any{"channel": "live:1", "exp": exp})}, "live:2", "deny:subscription_token"},
		{"glob is not a channel", Subject{SubscribeData: data(map[string]any{"channel": "live:*", "exp": exp})}, "live:1", "deny:subscription_token"},
		{"expired", Subject{SubscribeData: data(map[string]any{"channel": "live:1", "exp": float64(now.Unix())})}, "live:1", "deny:subscription_token"},
		{"no exp", Subject{SubscribeData: data(map[string]any{"channel": "live:1"})}, "live:1", "deny:subscription_token"},
		{"bad signature", Subject{SubscribeData: json.RawMessage(`{"token":"bad"}`)}, "live:1", "deny:subscription_token"},
		{"no data", Subject{}, "live:1", "deny:subscription_token"},
		{"data not an object", Subject{SubscribeData: json.RawMessage(`"tok"`)}, "live:1", "deny:subscription_token"},
		{"token not a string", Subject{SubscribeData: json.RawMessage(`{"token":5}`)}, "live:1", "deny:subscription_token"},
		{"own sub", Subject{Authenticated: true, Claims: map[string]any{"sub": "42"},
			SubscribeData: data(map[string]any{"channel": "live:1", "exp": exp, "sub": 42.0})}, "live:1", "allow"},
		{"other sub", Subject{Authenticated: true, Claims: map[string]any{"sub": "43"},
			SubscribeData: data(map[string]any{"channel": "live:1", "exp": exp, "sub": "42"})}, "live:1", "deny:subscription_token"},
		{"sub but anonymous socket", Subject{SubscribeData: data(map[string]any{"channel": "live:1", "exp": exp, "sub": "42"})}, "live:1", "deny:subscription_token"},
	}
	for _, c := range cases {
		if got := outcome(s.Check(OpSubscribe, c.ch, c.who)); got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
	// Without a verifier every subscription token is refused.
	noVerify := mustParse(t, chatYAML)
	ok := Subject{SubscribeData: data(map[string]any{"channel": "live:1", "exp": 1e12})}
	if d := noVerify.Check(OpSubscribe, "live:1", ok); d.Allow {
		t.Fatal("allowed without a verifier")
	}
}

func TestRuleFirstMatchWins(t *testing.T) {
	s := mustParse(t, `
rules:
  - {match: "a:b", subscribe: nobody, publish: nobody}
  - {match: "a:*", subscribe: anyone, publish: anyone}
default: {subscribe: authenticated, publish: authenticated}
`)
	for ch, want := range map[string]int{"a:b": 0, "a:c": 1, "a:": 1, "b": -1} {
		if r := s.Rule(ch); r.Index != want {
			t.Errorf("%q: rule %d, want %d", ch, r.Index, want)
		}
	}
	// Rules that start with a wildcard keep their place among the others.
	s = mustParse(t, `
rules:
  - {match: "a:x", subscribe: anyone, publish: anyone}
  - {match: "*:x", subscribe: anyone, publish: anyone}
  - {match: "a:*", subscribe: anyone, publish: anyone}
  - {match: "?:y", subscribe: anyone, publish: anyone}
  - {match: "b:*", subscribe: anyone, publish: anyone}
  - {match: "{sub}:z", subscribe: anyone, publish: anyone}
  - {match: "*", subscribe: anyone, publish: anyone}
`)
	for ch, want := range map[string]int{
		"a:x": 0, "b:x": 1, "a:y": 2, "b:y": 3, "c:y": 3, "b:z": 4, "c:z": 5, "c": 6, "": 6, "\xff": 6,
	} {
		if r := s.Rule(ch); r.Index != want || linearRule(s, ch) != r {
			t.Errorf("%q: rule %d, want %d", ch, r.Index, want)
		}
	}
}

// linearRule is Rule without the first-byte index.
func linearRule(s *Set, channel string) *Rule {
	if IsReserved(channel) {
		return nil
	}
	for i := range s.rules {
		if s.rules[i].pat.selects(channel) {
			return &s.rules[i]
		}
	}
	return &s.def
}

func TestClaimString(t *testing.T) {
	for v, want := range map[any]string{
		"42": "42", 42.0: "42", -0.0: "0", 1e20: "100000000000000000000", 1e21: "1e+21",
		4.5: "4.5", int64(7): "7", 7: "7", json.Number("1.50"): "1.5",
	} {
		if got, ok := claimString(v); !ok || got != want {
			t.Errorf("claimString(%#v) = %q, %v, want %q", v, got, ok, want)
		}
	}
	for _, v := range []any{"", nil, true, []any{"1"}, map[string]any{}, json.Number("x")} {
		if got, ok := claimString(v); ok {
			t.Errorf("claimString(%#v) = %q, want none", v, got)
		}
	}
}

func ExampleSet_Check() {
	s, _ := Parse([]byte(`
rules:
  - match: "user:{sub}"
    subscribe: authenticated
    publish: nobody
default: {subscribe: anyone, publish: authenticated}
`), YAML)
	me := Subject{Authenticated: true, Claims: map[string]any{"sub": "42"}}
	fmt.Println(s.Check(OpSubscribe, "user:42", me).Allow)
	fmt.Println(s.Check(OpSubscribe, "user:43", me).Err.Message)
	// Output:
	// true
	// the user:43 channel belongs to another user
}
