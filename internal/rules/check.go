package rules

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/sccgo/sccgo/protocol"
)

// Op is what a client asks to do on a channel.
type Op uint8

// The operations rules govern.
const (
	OpSubscribe Op = iota
	OpPublish
)

func (o Op) String() string {
	if o == OpPublish {
		return "publish"
	}
	return "subscribe"
}

// Reason says why a client was refused; it is a bounded metric label.
type Reason string

// The reasons for a refusal.
const (
	ReasonReserved          Reason = "reserved"           // a # channel
	ReasonUnauthenticated   Reason = "unauthenticated"    // the rule needs a token the socket lacks
	ReasonClaim             Reason = "claim"              // a {claim} placeholder is not the socket's
	ReasonTokenChannels     Reason = "token_channels"     // the token's channels claim does not list it
	ReasonSubscriptionToken Reason = "subscription_token" // missing, invalid or foreign subscription token
	ReasonNobody            Reason = "nobody"             // the rule refuses every client
)

// TokenVerifier checks a signed token's signature and algorithm the way
// auth tokens are checked, and returns its claims. Rules check the
// subscription-specific claims (exp, channel, sub) themselves.
type TokenVerifier func(signed string) (map[string]any, error)

// Subject is the socket asking.
type Subject struct {
	// Authenticated is true when the socket holds a valid auth token.
	Authenticated bool
	// Claims are the auth token's claims; ignored unless Authenticated.
	// An auth token with a "channel" claim is a subscription token used
	// as an auth token, and counts as no token at all.
	Claims map[string]any
	// SubscribeData is the #subscribe packet's data field, where a
	// subscription token travels as {"token": "<jwt>"}. It is only
	// decoded when the channel's rule asks for a subscription token.
	SubscribeData json.RawMessage
}

// Decision is the outcome of Check. Exactly one of Allow, NeedHook and
// Err != nil holds.
type Decision struct {
	Allow bool
	// NeedHook means the rule defers to the application backend's hook.
	NeedHook bool
	// Err is the SocketCluster error to answer the client with:
	// SubscribeBlockedError or PublishBlockedError.
	Err *protocol.Error
	// Reason is the refusal's metric label; empty unless Err is set.
	Reason Reason
	// Rule is the rule that decided; nil for reserved names.
	Rule *Rule
}

// Set is a parsed rules file. It is immutable and safe for concurrent use.
type Set struct {
	rules []Rule
	// byFirst lists, for each first byte of a channel name, the indexes
	// of the rules that can match it, in order: those whose pattern
	// starts with that byte and those that start with a wildcard. Most
	// names are then tried against a handful of rules, not all of them.
	byFirst *[256][]int32
	def     Rule
	digest  string
	verify  TokenVerifier
	now     func() time.Time
}

// Default returns the rules in force without a file: SocketCluster's
// default, where anyone may subscribe and publish.
func Default() *Set {
	s := &Set{def: Rule{Index: -1, Subscribe: Anyone, Publish: Anyone}, now: time.Now}
	s.digest = s.computeDigest()
	return s
}

// WithVerifier returns a copy of s that checks subscription tokens with v.
// Without one, subscription_token rules refuse every socket.
func (s *Set) WithVerifier(v TokenVerifier) *Set {
	c := *s
	c.verify = v
	return &c
}

// WithClock returns a copy of s that reads the time from now (for tests).
func (s *Set) WithClock(now func() time.Time) *Set {
	c := *s
	c.now = now
	return &c
}

// Digest is the hex SHA-256 of the rules' canonical form: two files that
// mean the same (YAML or JSON, any key order, defaults spelt out or not)
// have the same digest. Nodes report it so a mismatch shows.
func (s *Set) Digest() string { return s.digest }

// Rules returns the rules in order; the caller must not modify them.
func (s *Set) Rules() []Rule { return s.rules }

// DefaultRule returns the rule for channels no rule matches.
func (s *Set) DefaultRule() *Rule { return &s.def }

// IsReserved reports whether clients are always refused channel.
func IsReserved(channel string) bool { return strings.HasPrefix(channel, ReservedPrefix) }

// Rule returns the rule that governs channel (nil for reserved names).
func (s *Set) Rule(channel string) *Rule {
	if IsReserved(channel) {
		return nil
	}
	if s.byFirst != nil && channel != "" {
		for _, i := range s.byFirst[channel[0]] {
			if s.rules[i].pat.selects(channel) {
				return &s.rules[i]
			}
		}
		return &s.def
	}
	for i := range s.rules {
		if s.rules[i].pat.selects(channel) {
			return &s.rules[i]
		}
	}
	return &s.def
}

// HasPublishRates reports whether any rule, or the default, sets a
// publish_rate, so a caller can skip the lookup on every publish when none
// does.
func (s *Set) HasPublishRates() bool {
	if s.def.Options.PublishRate.PerSecond > 0 {
		return true
	}
	for i := range s.rules {
		if s.rules[i].Options.PublishRate.PerSecond > 0 {
			return true
		}
	}
	return false
}

// HasDeliveryRates reports whether any rule, or the default, sets a
// delivery_rate, so a caller can skip the lookup on every publish when
// none does.
func (s *Set) HasDeliveryRates() bool {
	if s.def.Options.DeliveryRate.PerSecond > 0 {
		return true
	}
	for i := range s.rules {
		if s.rules[i].Options.DeliveryRate.PerSecond > 0 {
			return true
		}
	}
	return false
}

// Options returns channel's options; the zero value for reserved names.
func (s *Set) Options(channel string) ChannelOptions {
	if r := s.Rule(channel); r != nil {
		return r.Options
	}
	return ChannelOptions{}
}

// Check decides whether sub may do op on channel.
func (s *Set) Check(op Op, channel string, sub Subject) Decision {
	if IsReserved(channel) {
		return deny(op, nil, ReasonReserved, "the %s channel is reserved to the server", channel)
	}
	r := s.Rule(channel)
	authed, claims := sub.Authenticated, sub.Claims
	if _, subToken := claims["channel"]; subToken {
		// A "channel" claim marks a subscription token. Signed with the
		// same key, it would otherwise authenticate a socket that was
		// only meant to read one channel.
		authed = false
	}
	if !authed {
		claims = nil
	}
	if r.pat != nil && len(r.pat.claims) > 0 {
		if !authed {
			return deny(op, r, ReasonUnauthenticated, "the %s channel needs an authenticated socket", channel)
		}
		if !r.pat.binds(channel, claims) {
			return deny(op, r, ReasonClaim, "the %s channel belongs to another user", channel)
		}
	}
	perm := r.Subscribe
	if op == OpPublish {
		perm = r.Publish
	}
	switch perm {
	case Anyone:
		return Decision{Allow: true, Rule: r}
	case Authenticated:
		if !authed {
			return deny(op, r, ReasonUnauthenticated, "the %s channel needs an authenticated socket", channel)
		}
		return Decision{Allow: true, Rule: r}
	case TokenChannels:
		if !authed {
			return deny(op, r, ReasonUnauthenticated, "the %s channel needs an authenticated socket", channel)
		}
		if !tokenLists(claims["channels"], channel) {
			return deny(op, r, ReasonTokenChannels, "the auth token does not list the %s channel", channel)
		}
		return Decision{Allow: true, Rule: r}
	case SubscriptionToken:
		if op == OpSubscribe {
			if msg := s.checkSubscriptionToken(channel, sub.SubscribeData, claims); msg != "" {
				return deny(op, r, ReasonSubscriptionToken, "%s", msg)
			}
			return Decision{Allow: true, Rule: r}
		}
	case Hook:
		return Decision{NeedHook: true, Rule: r}
	}
	return deny(op, r, ReasonNobody, "clients may not %s to the %s channel", op, channel)
}

func deny(op Op, r *Rule, reason Reason, format string, a ...any) Decision {
	name := protocol.ErrNameSubscribeBlocked
	if op == OpPublish {
		name = protocol.ErrNamePublishBlocked
	}
	return Decision{Err: protocol.NewError(name, fmt.Sprintf(format, a...)), Reason: reason, Rule: r}
}

// checkSubscriptionToken returns "" when data carries a valid subscription
// token for channel, else the refusal's message.
func (s *Set) checkSubscriptionToken(channel string, data json.RawMessage, claims map[string]any) string {
	var d struct {
		Token string `json:"token"`
	}
	if len(data) == 0 || json.Unmarshal(data, &d) != nil || d.Token == "" {
		return fmt.Sprintf("the %s channel needs a subscription token in the subscribe data {\"token\": ...}", channel)
	}
	if s.verify == nil {
		return "subscription tokens are not accepted by this server"
	}
	tc, err := s.verify(d.Token)
	if err != nil {
		return "invalid subscription token: " + err.Error()
	}
	exp, ok := numericClaim(tc["exp"])
	if !ok {
		return "the subscription token has no exp"
	}
	if float64(s.now().Unix()) >= exp {
		return "the subscription token has expired"
	}
	if c, _ := tc["channel"].(string); c != channel {
		return fmt.Sprintf("the subscription token is not for the %s channel", channel)
	}
	if tsub, has := tc["sub"]; has {
		want, ok := claimString(tsub)
		got, ok2 := claimString(claims["sub"])
		if !ok || !ok2 || want != got {
			return "the subscription token belongs to another user"
		}
	}
	return ""
}

func numericClaim(v any) (float64, bool) {
	switch v := v.(type) {
	case float64:
		return v, !math.IsNaN(v)
	case json.Number:
		f, err := v.Float64()
		return f, err == nil
	case int64:
		return float64(v), true
	case int:
		return float64(v), true
	}
	return 0, false
}

// claimString is a scalar claim's canonical text: strings as they are,
// numbers in shortest decimal form (42, 4.5), nothing else.
func claimString(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return v, v != ""
	case float64:
		return formatNumber(v)
	case json.Number:
		f, err := v.Float64()
		if err != nil {
			return "", false
		}
		return formatNumber(f)
	case int:
		return strconv.Itoa(v), true
	case int64:
		return strconv.FormatInt(v, 10), true
	}
	return "", false
}

func formatNumber(f float64) (string, bool) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return "", false
	}
	if f == 0 {
		return "0", true // and -0
	}
	if math.Abs(f) < 1e21 && math.Abs(f) >= 1e-6 {
		return strconv.FormatFloat(f, 'f', -1, 64), true
	}
	return strconv.FormatFloat(f, 'g', -1, 64), true
}

// tokenLists reports whether a channels claim (a name or glob, or a list
// of them) covers channel.
func tokenLists(v any, channel string) bool {
	var list []any
	switch v := v.(type) {
	case string:
		list = []any{v}
	case []any:
		list = v
	case []string:
		for _, g := range v {
			if globMatch(g, channel) {
				return true
			}
		}
		return false
	}
	for _, e := range list {
		if g, ok := e.(string); ok && globMatch(g, channel) {
			return true
		}
	}
	return false
}

// Glob reports whether channel matches glob, with the rules' pattern
// syntax: * any run of characters, ? one, \ escapes the next; no
// placeholders. An invalid glob (a trailing \) matches nothing. The
// server API's channel filter uses it too.
func Glob(glob, channel string) bool { return globMatch(glob, channel) }

// globMatch matches a glob from a token's channels claim. An invalid glob
// (a trailing \) matches nothing.
func globMatch(glob, channel string) bool {
	if !strings.ContainsAny(glob, `*?\`) {
		return glob == channel
	}
	p, err := compilePattern(glob, false)
	if err != nil {
		return false
	}
	return p.selects(channel)
}
