package frontend

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sccgo/sccgo/internal/rules"
)

const userRules = `
rules:
  - match: "user:{sub}"
    subscribe: authenticated
    publish: nobody
  - match: "live:*"
    subscribe: subscription_token
    publish: nobody
  - match: "moderated:*"
    subscribe: anyone
    publish: hook
  - match: "room:*"
    subscribe: anyone
    publish: authenticated
default: {subscribe: anyone, publish: anyone}
`

func rulesConfig(t testing.TB, doc string) Config {
	t.Helper()
	set, err := rules.Parse([]byte(doc), rules.YAML)
	if err != nil {
		t.Fatal(err)
	}
	c := testConfig()
	c.Rules = set
	return c
}

func blocked(cid int, name, msg string) string {
	return fmt.Sprintf(`{"rid":%d,"error":{"name":%q,"message":%q}}`, cid, name, msg)
}

// A private channel user:{sub}: refused without a token and to another
// user, allowed to its owner, never published to by a client.
func TestChannelRulesUserChannel(t *testing.T) {
	srv := startServer(t, rulesConfig(t, userRules))
	now := time.Now().Unix()

	anon := dial(t, srv)
	anon.handshake("")
	anon.send(`{"event":"#subscribe","data":{"channel":"user:42"},"cid":2}`)
	anon.expectJSON(blocked(2, "SubscribeBlockedError", "the user:42 channel needs an authenticated socket"))
	anon.subscribe("room", 3) // the default rule still lets anyone in

	other := dial(t, srv)
	other.handshake(hsToken(t, testKey, jwt.MapClaims{"sub": "43", "exp": now + 600}))
	for cid, ch := range []string{"user:42", "user:42*", "user:4?", "user:*", "user:４２"} {
		other.sendf(`{"event":"#subscribe","data":{"channel":%q},"cid":%d}`, ch, cid+10)
		other.expectJSON(blocked(cid+10, "SubscribeBlockedError", fmt.Sprintf("the %s channel belongs to another user", ch)))
	}
	other.subscribe("user:43", 20)

	owner := dial(t, srv)
	owner.handshake(hsToken(t, testKey, jwt.MapClaims{"sub": 42, "exp": now + 600}))
	owner.subscribe("user:42", 2)
	owner.send(`{"event":"#publish","data":{"channel":"user:42","data":"spoof"},"cid":3}`)
	owner.expectJSON(blocked(3, "PublishBlockedError", "clients may not publish to the user:42 channel"))
	probe(t, owner, 4) // the refused publish was not delivered

	reg := srv.Registry()
	for _, c := range []struct {
		op, reason string
		want       float64
	}{{"subscribe", "unauthenticated", 1}, {"subscribe", "claim", 5}, {"publish", "nobody", 1}} {
		if got := counter(t, reg, "scc_frontend_channel_refusals_total", "op", c.op, "reason", c.reason); got != c.want {
			t.Errorf("refusals %s/%s = %v, want %v", c.op, c.reason, got, c.want)
		}
	}
	if got := counter(t, reg, "scc_frontend_publish_errors_total", "reason", "forbidden"); got != 1 {
		t.Errorf("publish errors forbidden = %v, want 1", got)
	}
}

// Reserved # channels are closed to clients even without a rules file,
// and a file-less server keeps SocketCluster's open default.
func TestChannelRulesReservedWithoutFile(t *testing.T) {
	srv := startServer(t, testConfig())
	c := dial(t, srv)
	c.handshake(hsToken(t, testKey, jwt.MapClaims{"sub": "42"}))
	c.subscribe("user:42", 2)
	c.subscribe("anything", 3)
	c.send(`{"event":"#subscribe","data":{"channel":"#scc:user:42"},"cid":4}`)
	c.expectJSON(blocked(4, "SubscribeBlockedError", "the #scc:user:42 channel is reserved to the server"))
	c.send(`{"event":"#publish","data":{"channel":"#publish","data":1},"cid":5}`)
	c.expectJSON(blocked(5, "PublishBlockedError", "the #publish channel is reserved to the server"))
	if d := srv.RulesDigest(); d != rules.Default().Digest() {
		t.Errorf("digest %q, want the default rules'", d)
	}
}

// A subscription token, signed with the auth key, opens one channel.
func TestChannelRulesSubscriptionToken(t *testing.T) {
	srv := startServer(t, rulesConfig(t, userRules))
	now := time.Now().Unix()
	tok := hsToken(t, testKey, jwt.MapClaims{"channel": "live:1", "exp": now + 60})
	expired := hsToken(t, testKey, jwt.MapClaims{"channel": "live:1", "exp": now - 60})
	forged := hsToken(t, "another-key", jwt.MapClaims{"channel": "live:1", "exp": now + 60})

	c := dial(t, srv)
	c.handshake("")
	c.send(`{"event":"#subscribe","data":{"channel":"live:1"},"cid":2}`)
	c.expectJSON(blocked(2, "SubscribeBlockedError", `the live:1 channel needs a subscription token in the subscribe data {"token": ...}`))
	c.sendf(`{"event":"#subscribe","data":{"channel":"live:2","data":{"token":%q}},"cid":3}`, tok)
	c.expectJSON(blocked(3, "SubscribeBlockedError", "the subscription token is not for the live:2 channel"))
	c.sendf(`{"event":"#subscribe","data":{"channel":"live:1","data":{"token":%q}},"cid":4}`, expired)
	c.expectJSON(blocked(4, "SubscribeBlockedError", "invalid subscription token: jwt expired"))
	c.sendf(`{"event":"#subscribe","data":{"channel":"live:1","data":{"token":%q}},"cid":5}`, forged)
	c.expectJSON(blocked(5, "SubscribeBlockedError", "invalid subscription token: invalid signature"))
	c.sendf(`{"event":"#subscribe","data":{"channel":"live:1","data":{"token":%q}},"cid":6}`, tok)
	c.expect(`{"rid":6}`)

	// Used as an auth token, it is accepted (it is validly signed) but
	// grants nothing that needs authentication.
	c.sendf(`{"event":"#authenticate","data":%q,"cid":7}`, tok)
	c.expect(`{"rid":7,"data":{"isAuthenticated":true,"authError":null}}`)
	c.send(`{"event":"#publish","data":{"channel":"room:1","data":"hi"},"cid":8}`)
	c.expectJSON(blocked(8, "PublishBlockedError", "the room:1 channel needs an authenticated socket"))
}

// Without a hooks client, a hook rule refuses and says why.
func TestChannelRulesHookWithoutBackend(t *testing.T) {
	srv := startServer(t, rulesConfig(t, userRules))
	c := dial(t, srv)
	c.handshake("")
	c.subscribe("moderated:1", 2)
	c.send(`{"event":"#publish","data":{"channel":"moderated:1","data":"hi"},"cid":3}`)
	c.expectJSON(blocked(3, "PublishBlockedError", "the moderated:1 channel's rule asks a backend hook, and this server has none"))
	if got := counter(t, srv.Registry(), "scc_frontend_channel_refusals_total", "op", "publish", "reason", reasonHookUnavailable); got != 1 {
		t.Errorf("hook refusals = %v, want 1", got)
	}
}

// A socket that loses its token, or changes user, leaves the channels the
// old token admitted it to; the rest stay.
func TestChannelRulesRecheckOnAuthChange(t *testing.T) {
	srv := startServer(t, rulesConfig(t, userRules))
	now := time.Now().Unix()

	c := dial(t, srv)
	c.handshake(hsToken(t, testKey, jwt.MapClaims{"sub": "42", "exp": now + 600}))
	c.subscribe("user:42", 2)
	c.subscribe("room", 3)
	c.send(`{"event":"#removeAuthToken"}`)
	c.expectJSON(`{"event":"#kickOut","data":{"channel":"user:42","message":"the user:42 channel needs an authenticated socket"}}`)
	probe(t, c, 4)
	if err := srv.Publish(context.Background(), "user:42", []byte(`"private"`)); err != nil {
		t.Fatal(err)
	}
	if err := srv.Publish(context.Background(), "room", []byte(`"public"`)); err != nil {
		t.Fatal(err)
	}
	c.expect(`{"event":"#publish","data":{"channel":"room","data":"public"}}`)

	c.send(`{"event":"#subscribe","data":{"channel":"user:42"},"cid":5}`)
	c.expectJSON(blocked(5, "SubscribeBlockedError", "the user:42 channel needs an authenticated socket"))
	c.sendf(`{"event":"#authenticate","data":%q,"cid":6}`, hsToken(t, testKey, jwt.MapClaims{"sub": "42", "exp": now + 600}))
	c.expect(`{"rid":6,"data":{"isAuthenticated":true,"authError":null}}`)
	c.subscribe("user:42", 7)
	c.sendf(`{"event":"#authenticate","data":%q,"cid":8}`, hsToken(t, testKey, jwt.MapClaims{"sub": "43", "exp": now + 600}))
	c.expectJSON(`{"event":"#kickOut","data":{"channel":"user:42","message":"the user:42 channel belongs to another user"}}`)
	c.expect(`{"rid":8,"data":{"isAuthenticated":true,"authError":null}}`)
	if got := counter(t, srv.Registry(), "scc_frontend_channel_refusals_total", "op", "recheck", "reason", "claim"); got != 1 {
		t.Errorf("recheck refusals = %v, want 1", got)
	}
}

// An expired token is noticed at the socket's next packet, and its
// user:{sub} subscription goes with it.
func TestChannelRulesRecheckOnExpiry(t *testing.T) {
	srv := startServer(t, rulesConfig(t, userRules))
	c := dial(t, srv)
	c.handshake(hsToken(t, testKey, jwt.MapClaims{"sub": "42", "exp": time.Now().Unix() + 1}))
	c.subscribe("user:42", 2)
	deadline := time.Now().Add(10 * time.Second)
	for cid := 3; ; cid++ {
		if time.Now().After(deadline) {
			t.Fatal("the token never expired")
		}
		c.sendf(`{"event":"probe","cid":%d}`, cid)
		p := c.packet()
		if p == `{"event":"#removeAuthToken"}` {
			break
		}
		if !strings.HasPrefix(p, fmt.Sprintf(`{"rid":%d,"error"`, cid)) {
			t.Fatalf("unexpected packet %s", p)
		}
		time.Sleep(50 * time.Millisecond) // pacing the probes, not synchronisation
	}
	c.expectJSON(`{"event":"#kickOut","data":{"channel":"user:42","message":"the user:42 channel needs an authenticated socket"}}`)
}

func TestChannelRulesDigestMetric(t *testing.T) {
	cfg := rulesConfig(t, userRules)
	srv := startServer(t, cfg)
	if got := counter(t, srv.Registry(), "scc_frontend_channel_rules_info", "digest", cfg.Rules.Digest()); got != 1 {
		t.Fatalf("channel_rules_info{digest=%s} = %v, want 1", cfg.Rules.Digest(), got)
	}
	if srv.RulesDigest() != cfg.Rules.Digest() {
		t.Fatalf("RulesDigest %s, want %s", srv.RulesDigest(), cfg.Rules.Digest())
	}
}
