package rules

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const chatYAML = `
# Public rooms, private user channels, team channels, backend notifications.
default:
  subscribe: nobody
  publish: nobody
rules:
  - match: "room:*"
    subscribe: anyone
    publish: authenticated
    history: {size: 100, ttl: 10m}
    recovery: true
    presence: true
    join_leave: true
    publish_rate: {per_second: 5}
  - match: "user:{sub}"
    subscribe: authenticated
    publish: nobody
  - match: "team:{teams}:chat"
    subscribe: authenticated
    publish: authenticated
  - match: "project:*"
    subscribe: token_channels
    publish: token_channels
  - match: "live:*"
    subscribe: subscription_token
    publish: nobody
  - match: "moderated:*"
    subscribe: anyone
    publish: hook
  - match: "notifications"
    subscribe: authenticated
    publish: nobody
`

func TestParseChatExample(t *testing.T) {
	s, err := Parse([]byte(chatYAML), YAML)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(s.Rules()); n != 7 {
		t.Fatalf("%d rules, want 7", n)
	}
	o := s.Options("room:lobby")
	want := ChannelOptions{
		History:  History{Size: 100, TTL: Duration(10 * time.Minute)},
		Recovery: true, Presence: true, JoinLeave: true,
		PublishRate: PublishRate{PerSecond: 5, Burst: 5},
	}
	if o != want {
		t.Fatalf("options %+v, want %+v", o, want)
	}
	if o := s.Options("elsewhere"); o != (ChannelOptions{}) {
		t.Fatalf("default options %+v, want zero", o)
	}
	if o := s.Options("#room:x"); o != (ChannelOptions{}) {
		t.Fatalf("reserved options %+v, want zero", o)
	}
}

// The same rules in JSON, other key order, with a default spelt out and
// a duration in milliseconds, have the same digest; any change changes it.
func TestDigestIsCanonical(t *testing.T) {
	y := `
rules:
  - match: "room:*"
    subscribe: anyone
    publish: authenticated
    history: {size: 10, ttl: 1m}
    publish_rate: {per_second: 2.5}
default: {subscribe: nobody, publish: nobody}
`
	j := `{"default":{"publish":"nobody","subscribe":"nobody"},
	"rules":[{"publish":"authenticated","history":{"ttl":60000,"size":10},"subscribe":"anyone","match":"room:*",
	"publish_rate":{"burst":3,"per_second":2.5}}]}`
	a, err := Parse([]byte(y), YAML)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Parse([]byte(j), JSON)
	if err != nil {
		t.Fatal(err)
	}
	if a.Digest() != b.Digest() || len(a.Digest()) != 64 {
		t.Fatalf("digests %q and %q differ", a.Digest(), b.Digest())
	}
	c, err := Parse([]byte(strings.Replace(y, "size: 10", "size: 11", 1)), YAML)
	if err != nil {
		t.Fatal(err)
	}
	if c.Digest() == a.Digest() {
		t.Fatal("a changed rule kept the digest")
	}
	if Default().Digest() == a.Digest() || Default().Digest() != Default().Digest() {
		t.Fatal("default digest is not distinct and stable")
	}
}

func TestParseErrorsNameRuleAndField(t *testing.T) {
	head := "rules:\n  - match: \"room:*\"\n    subscribe: anyone\n    publish: anyone\n"
	cases := []struct {
		name, doc string
		format    Format
		want      string
	}{
		{"unknown top field", "rulez: []\n", YAML, `field "rulez": unknown field`},
		{"unknown rule field", head + "  - match: \"user:{sub}\"\n    subscribe: anyone\n    publish: anyone\n    histroy: {size: 1}\n",
			YAML, `rule 1 (match "user:{sub}"): field "histroy": unknown field`},
		{"unknown nested field", head + "  - match: \"b\"\n    subscribe: anyone\n    publish: anyone\n    history: {size: 1, tll: 1s}\n",
			YAML, `rule 1 (match "b"): field "tll": unknown field`},
		{"unknown permission", "rules:\n  - match: a\n    subscribe: anyon\n    publish: anyone\n",
			YAML, `rule 0 (match "a"): field "subscribe": unknown permission "anyon"`},
		{"missing publish", "rules:\n  - match: a\n    subscribe: anyone\n",
			YAML, `rule 0 (match "a"): field "publish": required`},
		{"missing match", "rules:\n  - subscribe: anyone\n    publish: anyone\n",
			YAML, `rule 0 (match ""): field "match": required`},
		{"bad pattern", "rules:\n  - match: \"user:{sub}*\"\n    subscribe: anyone\n    publish: anyone\n",
			YAML, `rule 0 (match "user:{sub}*"): field "match": a placeholder must sit`},
		{"reserved pattern", "rules:\n  - match: \"#x\"\n    subscribe: anyone\n    publish: anyone\n",
			YAML, `rule 0 (match "#x"): field "match": channels starting with "#" are reserved`},
		{"wrong type", "rules:\n  - match: a\n    subscribe: anyone\n    publish: anyone\n    history: {size: lots, ttl: 1s}\n",
			YAML, `rule 0 (match "a"): field "history.size": want int, got string`},
		{"bad duration", "rules:\n  - match: a\n    subscribe: anyone\n    publish: anyone\n    history: {size: 1, ttl: soon}\n",
			YAML, `rule 0 (match "a"): not a duration`},
		{"size without ttl", "rules:\n  - match: a\n    subscribe: anyone\n    publish: anyone\n    history: {size: 5}\n",
			YAML, `rule 0 (match "a"): field "history.ttl": required when history.size is set`},
		{"recovery without history", "rules:\n  - match: a\n    subscribe: anyone\n    publish: anyone\n    recovery: true\n",
			YAML, `field "recovery": needs history`},
		{"join_leave without presence", "rules:\n  - match: a\n    subscribe: anyone\n    publish: anyone\n    join_leave: true\n",
			YAML, `field "join_leave": needs presence`},
		{"negative rate", "rules:\n  - match: a\n    subscribe: anyone\n    publish: anyone\n    publish_rate: {per_second: -1}\n",
			YAML, `field "publish_rate.per_second": must be a positive number`},
		{"burst without rate", "rules:\n  - match: a\n    subscribe: anyone\n    publish: anyone\n    publish_rate: {burst: 3}\n",
			YAML, `field "publish_rate.burst": needs publish_rate.per_second`},
		{"subscription token publish", "rules:\n  - match: a\n    subscribe: anyone\n    publish: subscription_token\n",
			YAML, `rule 0 (match "a"): field "publish": subscription_token applies to subscribe only`},
		{"default with match", "default: {match: x, subscribe: anyone, publish: anyone}\n",
			YAML, `default rule: field "match"`},
		{"default missing subscribe", "default: {publish: anyone}\n",
			YAML, `default rule: field "subscribe": required`},
		{"duplicate key", "rules:\n  - match: a\n    subscribe: anyone\n    subscribe: nobody\n    publish: anyone\n",
			YAML, `already set`},
		{"empty", "# nothing\n", YAML, "the file is empty"},
		{"json unknown field", `{"rules":[{"match":"a","subscribe":"anyone","publish":"anyone","extra":1}]}`,
			JSON, `rule 0 (match "a"): field "extra": unknown field`},
		{"json syntax", `{"rules":[`, JSON, "rules: "},
		{"json trailing", `{"rules":[]} {}`, JSON, "trailing data"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.doc), c.format)
			if err == nil {
				t.Fatalf("no error, want %q", c.want)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v does not wrap ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q, want it to contain %q", err, c.want)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	y := filepath.Join(dir, "channels.yaml")
	if err := os.WriteFile(y, []byte(chatYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Load(y)
	if err != nil {
		t.Fatal(err)
	}
	js := filepath.Join(dir, "channels.json")
	if err := os.WriteFile(js, []byte(`{"default":{"subscribe":"anyone","publish":"nobody"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	j, err := Load(js)
	if err != nil {
		t.Fatal(err)
	}
	if s.Digest() == j.Digest() {
		t.Fatal("different files, same digest")
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, make([]byte, MaxFileSize+1), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(big); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("huge file: %v", err)
	}
}

// Backslash escapes survive YAML single quotes and JSON's own escaping.
func TestParseEscapes(t *testing.T) {
	y, err := Parse([]byte("rules:\n  - {match: 'price\\*', subscribe: anyone, publish: nobody}\ndefault: {subscribe: nobody, publish: nobody}\n"), YAML)
	if err != nil {
		t.Fatal(err)
	}
	j, err := Parse([]byte(`{"rules":[{"match":"price\\*","subscribe":"anyone","publish":"nobody"}],"default":{"subscribe":"nobody","publish":"nobody"}}`), JSON)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []*Set{y, j} {
		if r := s.Rule("price*"); r.Index != 0 {
			t.Errorf("price* chose rule %d", r.Index)
		}
		if r := s.Rule("prices"); r.Index != -1 {
			t.Errorf("prices chose rule %d, want the default", r.Index)
		}
	}
	if y.Digest() != j.Digest() {
		t.Error("same rules, different digests")
	}
}

// TestParseDeliveryRate: delivery_rate is parsed, defaulted and checked
// like publish_rate, and is part of the digest only when set, so a file
// without it keeps the digest it had before the option existed.
func TestParseDeliveryRate(t *testing.T) {
	s, err := Parse([]byte("rules:\n  - {match: \"a:*\", subscribe: anyone, publish: anyone, delivery_rate: {per_second: 2.5}}\n"), YAML)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Options("a:1").DeliveryRate; got != (DeliveryRate{PerSecond: 2.5, Burst: 3}) {
		t.Fatalf("delivery rate %+v", got)
	}
	if !s.HasDeliveryRates() || s.HasPublishRates() {
		t.Fatalf("HasDeliveryRates %v, HasPublishRates %v", s.HasDeliveryRates(), s.HasPublishRates())
	}
	chat, err := Parse([]byte(chatYAML), YAML)
	if err != nil {
		t.Fatal(err)
	}
	if chat.HasDeliveryRates() {
		t.Fatal("the chat example sets no delivery_rate")
	}
	// The chat example's digest before delivery_rate existed.
	if d := chat.Digest(); d != chatDigest {
		t.Fatalf("digest %s, want %s", d, chatDigest)
	}
	with, err := Parse([]byte(strings.Replace(chatYAML, "publish_rate: {per_second: 5}", "publish_rate: {per_second: 5}\n    delivery_rate: {per_second: 500}", 1)), YAML)
	if err != nil {
		t.Fatal(err)
	}
	if with.Digest() == chat.Digest() {
		t.Fatal("delivery_rate left the digest unchanged")
	}
	for yaml, want := range map[string]string{
		"delivery_rate: {per_second: -1}":           `field "delivery_rate.per_second": must be a positive number`,
		"delivery_rate: {burst: 3}":                 `field "delivery_rate.burst": needs delivery_rate.per_second`,
		"delivery_rate: {per_second: 1, burst: -1}": `field "delivery_rate.burst": must not be negative`,
	} {
		_, err := Parse([]byte("rules:\n  - match: a\n    subscribe: anyone\n    publish: anyone\n    "+yaml+"\n"), YAML)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %s", yaml, err, want)
		}
	}
}

// chatDigest is chatYAML's digest, fixed so that a new option that a
// file does not set cannot change the digests of the files in use.
const chatDigest = "0a2a6a5993f73a0afc42779e26a9309233aaa3f57fb569621672477a250a49ea"
