package hostile

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sccgo/sccgo/frontend"
	"github.com/sccgo/sccgo/internal/rules"
)

const hostileRules = `
rules:
  - match: "user:{sub}"
    subscribe: authenticated
    publish: nobody
  - match: "team:{teams}:*"
    subscribe: authenticated
    publish: authenticated
default: {subscribe: anyone, publish: anyone}
`

// hostileChannels try to reach user 42's private channel or team 7's
// channels: wildcards, escapes (raw JSON, so \u escapes reach the server
// as the client wrote them), padding, lookalike digits, NFD, zero-width
// characters and other users' spellings of 42.
var hostileChannels = []string{
	`user:42`, `user:\u0034\u0032`, `user:42*`, `user:4*`, `user:*`, `user:4?`, `user:??`, `user:4[2]`,
	`user:4\\2`, `user:42\\`, `user:{sub}`, `user:%34%32`, `user:42\u0000`, `user:\u000042`,
	`user:42 `, `user: 42`, `user:042`, `user:+42`, `user:42.0`, `user:4.2e1`,
	`user:\uff14\uff12`, `user:4\u200b2`, `user:42\u0301`, `user:\u0664\u0662`, `user:42:x`,
	`team:7:chat`, `team:7*:chat`, `team:*:chat`, `team:\u0037:chat`, `team:07:chat`,
}

// TestHostileChannelNames: sockets of other users, and sockets without a
// token, try every hostile spelling of user 42's and team 7's channels.
// Each subscribe that reaches the user or team rule is refused with
// SubscribeBlockedError, no publish from them gets in, and while the
// backend publishes to the victim's channels none of them receives a
// message; the victim receives every one.
func TestHostileChannelNames(t *testing.T) {
	set, err := rules.Parse([]byte(hostileRules), rules.YAML)
	if err != nil {
		t.Fatal(err)
	}
	f := startFrontend(t, func(c *frontend.Config) {
		c.Rules = set
		c.SocketChannelLimit = 2 * len(hostileChannels)
	})
	key := []byte("hostile-test-key-of-at-least-32-bytes")
	token := func(claims jwt.MapClaims) string {
		claims["exp"] = time.Now().Add(time.Hour).Unix()
		s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}

	victim := dialSC(t, f.url)
	victim.handshake(token(jwt.MapClaims{"sub": "42", "teams": []any{7}}))
	victim.subscribe("user:42", 2)
	victim.subscribe("team:7:chat", 3)

	// Tokens the backend gave other users, some with claims that look
	// like 42 or 7 without being them.
	attackerClaims := []jwt.MapClaims{
		nil, // no token
		{"sub": "43", "teams": []any{8}},
		{"sub": "4", "teams": []any{"07", 77}},
		{"sub": "420", "teams": []any{"7*"}},
		{"sub": "42 ", "teams": "7 "},
		{"sub": 42.5, "teams": []any{7.5}},
		{"sub": "*", "teams": []any{"*"}},
		{"sub": "４２", "teams": []any{"７"}},
		{"sub": map[string]any{"42": true}, "teams": map[string]any{"7": true}},
		{"teams": []any{}},
	}
	var attackers []*scClient
	for i, claims := range attackerClaims {
		a := dialSC(t, f.url)
		tok := ""
		if claims != nil {
			tok = token(claims)
		}
		a.handshake(tok)
		cid := 10
		for _, ch := range hostileChannels {
			cid++
			a.sendf(`{"event":"#subscribe","data":{"channel":"%s"},"cid":%d}`, ch, cid)
			r := a.reply(cid)
			e, refused := r["error"].(map[string]any)
			var decoded string
			_ = json.Unmarshal([]byte(`"`+ch+`"`), &decoded)
			guarded := strings.HasPrefix(decoded, "user:") || strings.HasPrefix(decoded, "team:")
			switch {
			case guarded && !refused && !owns(claims, decoded):
				t.Errorf("attacker %d (%v): subscribed to %q", i, claims, decoded)
			case guarded && refused && owns(claims, decoded):
				t.Errorf("attacker %d (%v): refused its own %q: %v", i, claims, decoded, e)
			case refused && e["name"] != "SubscribeBlockedError":
				t.Errorf("attacker %d: %q refused with %v, want SubscribeBlockedError", i, decoded, e)
			}
		}
		for _, ch := range []string{"user:42", "team:7:chat"} {
			cid++
			a.sendf(`{"event":"#publish","data":{"channel":%q,"data":"forged"},"cid":%d}`, ch, cid)
			if e, ok := a.reply(cid)["error"].(map[string]any); !ok || e["name"] != "PublishBlockedError" {
				t.Errorf("attacker %d: publish to %s answered %v, want PublishBlockedError", i, ch, e)
			}
		}
		attackers = append(attackers, a)
	}

	const n = 50
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range n {
		for _, ch := range []string{"user:42", "team:7:chat"} {
			if err := f.srv.Publish(ctx, ch, json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))); err != nil {
				t.Fatal(err)
			}
		}
	}
	got := map[string]int{}
	for got["user:42"]+got["team:7:chat"] < 2*n {
		var p struct {
			Event string `json:"event"`
			Data  struct {
				Channel string `json:"channel"`
			} `json:"data"`
		}
		pkt := victim.next(waitTimeout)
		if err := json.Unmarshal([]byte(pkt), &p); err != nil || p.Event != "#publish" {
			t.Fatalf("victim got %s", pkt)
		}
		got[p.Data.Channel]++
	}
	if got["user:42"] != n || got["team:7:chat"] != n {
		t.Fatalf("victim received %v, want %d on each", got, n)
	}
	// Deliveries are queued before the probe's reply, so anything that
	// leaked to an attacker is read before it.
	for i, a := range attackers {
		a.send(`{"event":"probe","cid":9999}`)
		for {
			pkt := a.next(waitTimeout)
			if strings.HasPrefix(pkt, `{"rid":9999`) {
				break
			}
			if strings.Contains(pkt, `"#publish"`) {
				t.Errorf("attacker %d received %s", i, pkt)
			}
		}
	}
	if v := metric(t, f.srv.Registry(), "scc_frontend_channel_refusals_total", "op", "subscribe", "reason", "claim"); v == 0 {
		t.Error("no claim refusals counted")
	}
}

// owns reports whether a token's string claims name channel literally:
// user:<sub>, or team:<one of teams>:<anything>. Claim values that look
// like patterns (sub "*") own only the channel spelled that way.
func owns(claims jwt.MapClaims, channel string) bool {
	if sub, ok := claims["sub"].(string); ok && channel == "user:"+sub {
		return true
	}
	teams, _ := claims["teams"].([]any)
	if s, ok := claims["teams"].(string); ok {
		teams = []any{s}
	}
	for _, t := range teams {
		if s, ok := t.(string); ok && strings.HasPrefix(channel, "team:"+s+":") {
			return true
		}
	}
	return false
}
