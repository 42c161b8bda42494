package rules

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/sccgo/sccgo/internal/config"
)

// ReservedPrefix starts every channel name that clients can never subscribe
// or publish to.
const ReservedPrefix = "#"

// InternalPrefix starts the cluster's own channels (per-user control
// channels and the like). It lies under ReservedPrefix.
const InternalPrefix = "#scc:"

// MaxFileSize is the largest rules file Load reads, in bytes.
const MaxFileSize = 4 << 20

// ErrInvalid is wrapped by every error about the content of a rules file.
var ErrInvalid = errors.New("rules: invalid channel rules")

// Permission says who may do an operation on a channel.
type Permission string

// The permissions, as written in the file.
const (
	// Anyone lets every socket, authenticated or not.
	Anyone Permission = "anyone"
	// Authenticated lets sockets that hold a valid auth token.
	Authenticated Permission = "authenticated"
	// TokenChannels lets sockets whose auth token's "channels" claim lists
	// the channel, by name or by glob (`*`, `?`, `\`; no placeholders).
	TokenChannels Permission = "token_channels"
	// SubscriptionToken lets a socket that passes, in the #subscribe data
	// ({"token": "<jwt>"}), a token signed like auth tokens whose "channel"
	// claim is the channel, that has not expired, and whose "sub", when
	// present, is the socket's. Subscribe only.
	SubscriptionToken Permission = "subscription_token"
	// Hook asks the application backend (Decision.NeedHook).
	Hook Permission = "hook"
	// Nobody refuses every client; only the server API may publish.
	Nobody Permission = "nobody"
)

var permissions = []Permission{Anyone, Authenticated, TokenChannels, SubscriptionToken, Hook, Nobody}

// Duration is a rules file duration: Go syntax ("5m", "250ms") or a bare
// number of milliseconds.
type Duration time.Duration

// UnmarshalJSON accepts "5m" or 300000.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	switch v := v.(type) {
	case string:
		x, err := config.ParseDuration(v)
		if err != nil {
			return err
		}
		*d = Duration(x)
	case float64:
		if v < 0 || math.IsNaN(v) || v > float64(math.MaxInt64/int64(time.Millisecond)) {
			return errors.New("duration out of range")
		}
		*d = Duration(time.Duration(v * float64(time.Millisecond)))
	default:
		return errors.New("not a duration (use 5s, 250ms or milliseconds)")
	}
	return nil
}

// History is a channel's message history.
type History struct {
	// Size is how many messages are kept; 0 keeps none.
	Size int `json:"size"`
	// TTL is how long a channel's history lives after its last message.
	TTL Duration `json:"ttl"`
}

// PublishRate bounds client publishes to a channel: all sockets of one
// frontend together, in place of SCC_CHANNEL_PUBLISH_RATE for the
// channels of the rule.
type PublishRate struct {
	// PerSecond is the sustained rate; 0 means unbounded.
	PerSecond float64 `json:"per_second"`
	// Burst is the bucket size; defaults to max(1, ceil(PerSecond)).
	Burst int `json:"burst"`
}

// DeliveryRate bounds the deliveries that client publishes to a channel
// may cause on one frontend (each publish costs one per local subscriber,
// times one plus its data's whole KiB), in place of
// SCC_CHANNEL_DELIVERY_RATE for the channels of the rule.
type DeliveryRate struct {
	// PerSecond is the sustained rate; 0 means the frontend's default.
	PerSecond float64 `json:"per_second"`
	// Burst is the bucket size; defaults to max(1, ceil(PerSecond)).
	Burst int `json:"burst"`
}

// ChannelOptions are the per-channel settings of the features that read
// them (history, recovery, presence, join/leave events, publish rate,
// delivery rate). The zero value turns every one off.
type ChannelOptions struct {
	History      History      `json:"history"`
	Recovery     bool         `json:"recovery"`
	Presence     bool         `json:"presence"`
	JoinLeave    bool         `json:"join_leave"`
	PublishRate  PublishRate  `json:"publish_rate"`
	DeliveryRate DeliveryRate `json:"delivery_rate"`
}

// Rule is one entry of the file. Index is its position in the rules list
// (0-based), -1 for the default rule.
type Rule struct {
	Index     int
	Match     string
	Subscribe Permission
	Publish   Permission
	Options   ChannelOptions

	pat *pattern
}

// ruleDoc is a rule as written in the file.
type ruleDoc struct {
	Match     *string     `json:"match"`
	Subscribe *Permission `json:"subscribe"`
	Publish   *Permission `json:"publish"`
	ChannelOptions
}

type fileDoc struct {
	Default json.RawMessage   `json:"default"`
	Rules   []json.RawMessage `json:"rules"`
}

// Format is the syntax of a rules file.
type Format int

// The formats.
const (
	YAML Format = iota
	JSON
)

// Error is a problem in a rules file. Rule is the rule's index, -1 for the
// default rule and -2 for the document itself.
type Error struct {
	Rule  int
	Match string
	Field string
	Msg   string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("rules: ")
	switch {
	case e.Rule == -1:
		b.WriteString("default rule: ")
	case e.Rule >= 0:
		fmt.Fprintf(&b, "rule %d (match %q): ", e.Rule, e.Match)
	}
	if e.Field != "" {
		fmt.Fprintf(&b, "field %q: ", e.Field)
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap makes every Error match ErrInvalid.
func (e *Error) Unwrap() error { return ErrInvalid }

// Load reads and parses the rules file at path: JSON when its name ends in
// .json, YAML otherwise.
func Load(path string) (*Set, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading channel rules: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading channel rules: %w", err)
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("reading channel rules: %s is larger than %d bytes", path, MaxFileSize)
	}
	format := YAML
	if strings.EqualFold(filepath.Ext(path), ".json") {
		format = JSON
	}
	return Parse(data, format)
}

// Parse parses a rules document. Unknown fields, duplicate keys (YAML),
// unknown permissions and inconsistent options are errors that name the
// rule and the field.
func Parse(data []byte, format Format) (*Set, error) {
	if format == YAML {
		j, err := yaml.YAMLToJSONStrict(data)
		if err != nil {
			return nil, &Error{Rule: -2, Msg: err.Error()}
		}
		data = j
	}
	if t := bytes.TrimSpace(data); len(t) == 0 || string(t) == "null" {
		return nil, &Error{Rule: -2, Msg: "the file is empty: write a default rule, a rules list, or unset SCC_CHANNELS_FILE"}
	}
	var doc fileDoc
	if err := strictDecode(data, &doc); err != nil {
		return nil, decodeError(-2, "", err)
	}
	s := &Set{now: time.Now}
	if len(doc.Default) == 0 || string(doc.Default) == "null" {
		// A file closes what it does not list.
		s.def = Rule{Index: -1, Subscribe: Nobody, Publish: Nobody}
	} else {
		r, err := parseRule(-1, doc.Default)
		if err != nil {
			return nil, err
		}
		s.def = *r
	}
	s.rules = make([]Rule, 0, len(doc.Rules))
	for i, raw := range doc.Rules {
		r, err := parseRule(i, raw)
		if err != nil {
			return nil, err
		}
		s.rules = append(s.rules, *r)
	}
	s.index()
	s.digest = s.computeDigest()
	return s, nil
}

// index fills byFirst.
func (s *Set) index() {
	if len(s.rules) == 0 {
		return
	}
	var idx [256][]int32
	for i := range s.rules {
		if p := s.rules[i].pat.prefix; p != "" {
			idx[p[0]] = append(idx[p[0]], int32(i))
			continue
		}
		for b := range idx {
			idx[b] = append(idx[b], int32(i))
		}
	}
	s.byFirst = &idx
}

func strictDecode(data []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(data))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return err
	}
	if d.More() {
		return errors.New("trailing data after the document")
	}
	return nil
}

// decodeError turns a json decoding error into an Error naming the field.
func decodeError(idx int, match string, err error) error {
	e := &Error{Rule: idx, Match: match}
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		e.Field = strings.TrimPrefix(te.Field, "ChannelOptions.") // the embedded struct's name is not a file field
		e.Msg = fmt.Sprintf("want %s, got %s", te.Type, te.Value)
	case errors.As(err, &se):
		e.Msg = "syntax error: " + se.Error()
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		e.Field = strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		e.Msg = "unknown field"
	default:
		e.Msg = strings.TrimPrefix(err.Error(), "json: ")
	}
	return e
}

func parseRule(idx int, raw json.RawMessage) (*Rule, error) {
	// The match is read leniently first so that every later error can
	// name the rule.
	var peek struct {
		Match any `json:"match"`
	}
	_ = json.Unmarshal(raw, &peek)
	match, _ := peek.Match.(string)
	var d ruleDoc
	if err := strictDecode(raw, &d); err != nil {
		return nil, decodeError(idx, match, err)
	}
	fail := func(field, format string, a ...any) error {
		return &Error{Rule: idx, Match: match, Field: field, Msg: fmt.Sprintf(format, a...)}
	}
	r := &Rule{Index: idx, Options: d.ChannelOptions}
	if idx == -1 {
		if d.Match != nil {
			return nil, fail("match", "the default rule matches every channel no other rule matches; it takes no pattern")
		}
	} else {
		if d.Match == nil {
			return nil, fail("match", "required")
		}
		r.Match = *d.Match
		if strings.HasPrefix(r.Match, ReservedPrefix) {
			return nil, fail("match", "channels starting with %q are reserved to the server and never open to clients", ReservedPrefix)
		}
		p, err := compilePattern(r.Match, true)
		if err != nil {
			return nil, fail("match", "%v", err)
		}
		r.pat = p
	}
	for _, op := range []struct {
		field string
		in    *Permission
		out   *Permission
	}{{"subscribe", d.Subscribe, &r.Subscribe}, {"publish", d.Publish, &r.Publish}} {
		if op.in == nil {
			return nil, fail(op.field, "required (one of %s)", permList())
		}
		if !validPermission(*op.in) {
			return nil, fail(op.field, "unknown permission %q (want one of %s)", *op.in, permList())
		}
		*op.out = *op.in
	}
	if r.Publish == SubscriptionToken {
		return nil, fail("publish", "subscription_token applies to subscribe only")
	}
	o := &r.Options
	switch {
	case o.History.Size < 0:
		return nil, fail("history.size", "must not be negative")
	case o.History.TTL < 0:
		return nil, fail("history.ttl", "must not be negative")
	case o.History.Size > 0 && o.History.TTL == 0:
		return nil, fail("history.ttl", "required when history.size is set")
	case o.History.Size == 0 && o.History.TTL > 0:
		return nil, fail("history.size", "required when history.ttl is set")
	case o.Recovery && o.History.Size == 0:
		return nil, fail("recovery", "needs history (size and ttl)")
	case o.JoinLeave && !o.Presence:
		return nil, fail("join_leave", "needs presence")
	case o.PublishRate.PerSecond < 0 || math.IsNaN(o.PublishRate.PerSecond) || math.IsInf(o.PublishRate.PerSecond, 0):
		return nil, fail("publish_rate.per_second", "must be a positive number")
	case o.PublishRate.Burst < 0:
		return nil, fail("publish_rate.burst", "must not be negative")
	case o.PublishRate.Burst > 0 && o.PublishRate.PerSecond == 0:
		return nil, fail("publish_rate.burst", "needs publish_rate.per_second")
	case o.DeliveryRate.PerSecond < 0 || math.IsNaN(o.DeliveryRate.PerSecond) || math.IsInf(o.DeliveryRate.PerSecond, 0):
		return nil, fail("delivery_rate.per_second", "must be a positive number")
	case o.DeliveryRate.Burst < 0:
		return nil, fail("delivery_rate.burst", "must not be negative")
	case o.DeliveryRate.Burst > 0 && o.DeliveryRate.PerSecond == 0:
		return nil, fail("delivery_rate.burst", "needs delivery_rate.per_second")
	}
	if o.PublishRate.PerSecond > 0 && o.PublishRate.Burst == 0 {
		o.PublishRate.Burst = max(1, int(math.Ceil(o.PublishRate.PerSecond)))
	}
	if o.DeliveryRate.PerSecond > 0 && o.DeliveryRate.Burst == 0 {
		o.DeliveryRate.Burst = max(1, int(math.Ceil(o.DeliveryRate.PerSecond)))
	}
	return r, nil
}

func validPermission(p Permission) bool {
	for _, q := range permissions {
		if p == q {
			return true
		}
	}
	return false
}

func permList() string {
	s := make([]string, len(permissions))
	for i, p := range permissions {
		s[i] = string(p)
	}
	return strings.Join(s, ", ")
}

// canonRule is a rule's canonical form for Digest: every field, defaults
// filled in, durations in milliseconds, in a fixed order.
type canonRule struct {
	Match       string  `json:"match"`
	Subscribe   string  `json:"subscribe"`
	Publish     string  `json:"publish"`
	HistorySize int     `json:"history_size"`
	HistoryTTL  int64   `json:"history_ttl_ms"`
	Recovery    bool    `json:"recovery"`
	Presence    bool    `json:"presence"`
	JoinLeave   bool    `json:"join_leave"`
	RatePerSec  float64 `json:"publish_rate_per_second"`
	RateBurst   int     `json:"publish_rate_burst"`
	// Left out when unset, so files written before delivery_rate keep
	// their digest.
	DelivPerSec float64 `json:"delivery_rate_per_second,omitempty"`
	DelivBurst  int     `json:"delivery_rate_burst,omitempty"`
}

func canon(r *Rule) canonRule {
	o := r.Options
	return canonRule{
		Match: r.Match, Subscribe: string(r.Subscribe), Publish: string(r.Publish),
		HistorySize: o.History.Size, HistoryTTL: time.Duration(o.History.TTL).Milliseconds(),
		Recovery: o.Recovery, Presence: o.Presence, JoinLeave: o.JoinLeave,
		RatePerSec: o.PublishRate.PerSecond, RateBurst: o.PublishRate.Burst,
		DelivPerSec: o.DeliveryRate.PerSecond, DelivBurst: o.DeliveryRate.Burst,
	}
}

func (s *Set) computeDigest() string {
	doc := struct {
		Default canonRule   `json:"default"`
		Rules   []canonRule `json:"rules"`
	}{Default: canon(&s.def), Rules: make([]canonRule, len(s.rules))}
	for i := range s.rules {
		doc.Rules[i] = canon(&s.rules[i])
	}
	b, err := json.Marshal(doc)
	if err != nil { // plain strings, numbers and bools always encode
		panic(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
