package frontend

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sccgo/sccgo/internal/dedupe"
	"github.com/sccgo/sccgo/internal/rules"
	"github.com/sccgo/sccgo/protocol"
)

// The server API (docs/api.md): POST /api/<method> with a JSON object of
// parameters, authenticated by "Authorization: apikey <key>" (or
// "X-API-Key: <key>"). Every frontend serves every method.
//
// Cluster-wide operations travel on internal channels, which clients can
// never subscribe or publish to (their names start with ReservedPrefix):
//
//   - #scc:user:<sub>: every frontend holding an authenticated socket
//     whose token's sub claim is <sub> subscribes to it while it holds one;
//     user disconnect and unsubscribe are control messages published there,
//     so they reach only the frontends that hold the user's sockets.
//   - #scc:node:<tag>: each frontend's own channel. A socket id starts
//     with its frontend's 8-character tag, so a disconnect by socket id is
//     published to exactly one frontend.
//   - #scc:nodes: every frontend; channels and info queries go there and
//     are answered on a per-request #scc:reply:<tag>:<n> channel that
//     only the asking frontend subscribes to. The asker waits for as many
//     answers as gossip knows live frontends, at most APIConfig.QueryTimeout,
//     and reports partial results.

// ReservedPrefix starts the names of sccgo's internal channels. Clients can
// neither subscribe nor publish to them, and the server API refuses them.
const ReservedPrefix = rules.InternalPrefix

const (
	userChanPrefix  = ReservedPrefix + "user:"
	nodeChanPrefix  = ReservedPrefix + "node:"
	nodesChan       = ReservedPrefix + "nodes"
	replyChanPrefix = ReservedPrefix + "reply:"
	nodeTagLen      = 8 // base64 characters of a socket id that name its frontend
)

// Server API refusal reasons (bounded: the reason label of
// scc_frontend_api_refusals_total).
const (
	apiRefuseMethod      = "method_not_allowed"
	apiRefuseNoKey       = "missing_key"
	apiRefuseBadKey      = "wrong_key"
	apiRefuseTooLarge    = "too_large"
	apiRefuseSlow        = "read_timeout"
	apiRefuseMalformed   = "malformed"
	apiRefuseUnknown     = "unknown_method"
	apiRefuseInvalid     = "invalid"
	apiRefuseUnavailable = "unavailable"
)

// APIConfig configures the server API. It is off unless Key is set.
type APIConfig struct {
	// Key enables the API; requests must present it. Env SCC_API_KEY.
	// Default "" (off). With a key, the frontend also takes part in the
	// cluster's control channels, so every frontend of a cluster should
	// have it.
	Key string
	// OnClientPort serves the API on the client port (Handler) as well
	// as from AdminHandler. scc-frontend sets it when there is no admin
	// port (SCC_ADMIN_PORT=0) or SCC_ADMIN_ON_CLIENT_PORT is set. Default
	// false.
	OnClientPort bool
	// MaxBodyBytes bounds a request body; larger bodies get HTTP 413.
	// Env SCC_API_MAX_BODY_BYTES. Default 1 MiB.
	MaxBodyBytes int64
	// ReadTimeout bounds reading one request's body, once its key has
	// been accepted; a slower body gets HTTP 408. Env SCC_API_READ_TIMEOUT.
	// Default 10s.
	ReadTimeout time.Duration
	// MaxBroadcastChannels bounds the channels of one broadcast. Env
	// SCC_API_MAX_BROADCAST_CHANNELS. Default 1000.
	MaxBroadcastChannels int
	// IdempotencyKeys and IdempotencyTTL bound the standalone in-process
	// broker's memory of recent (channel, idempotency key) pairs; in a
	// cluster the owning broker's own settings apply. Env
	// SCC_IDEMPOTENCY_KEYS (default 100000, 0 off) and SCC_IDEMPOTENCY_TTL
	// (default 2m).
	IdempotencyKeys int
	IdempotencyTTL  time.Duration
	// QueryTimeout bounds how long channels and info wait for other
	// frontends' answers. Env SCC_API_QUERY_TIMEOUT. Default 1s.
	QueryTimeout time.Duration
	// MaxQueryChannels bounds the channels one frontend reports to a
	// channels query (the answer says truncated beyond). Env
	// SCC_API_MAX_QUERY_CHANNELS. Default 10000.
	MaxQueryChannels int
}

// DefaultAPIConfig returns the server API defaults.
func DefaultAPIConfig() APIConfig {
	return APIConfig{
		MaxBodyBytes:         1 << 20,
		ReadTimeout:          10 * time.Second,
		MaxBroadcastChannels: 1000,
		IdempotencyKeys:      100000,
		IdempotencyTTL:       2 * time.Minute,
		QueryTimeout:         time.Second,
		MaxQueryChannels:     10000,
	}
}

func (c APIConfig) validate() error {
	var errs []error
	if c.MaxBodyBytes < 256 {
		errs = append(errs, fmt.Errorf("api max body bytes %d must be at least 256", c.MaxBodyBytes))
	}
	if c.MaxBroadcastChannels < 1 || c.MaxQueryChannels < 1 {
		errs = append(errs, errors.New("api max broadcast and query channels must be positive"))
	}
	if c.IdempotencyKeys < 0 || c.IdempotencyTTL < 0 {
		errs = append(errs, errors.New("idempotency keys and TTL must not be negative"))
	}
	if c.QueryTimeout <= 0 || c.ReadTimeout <= 0 {
		errs = append(errs, errors.New("api query and read timeouts must be positive"))
	}
	return errors.Join(errs...)
}

// FrontendCounter is implemented by a Broker that knows how many frontends
// are alive in the cluster; channels and info queries wait for that many
// answers. Without it they wait out APIConfig.QueryTimeout.
type FrontendCounter interface {
	AliveFrontends() int
}

// api is the server API and the control plane behind it.
type api struct {
	s       *Server
	keyHash [32]byte
	on      bool
	tag     string // this frontend's socket id prefix

	ctl *subTable // internal user channels → local sockets

	requests *prometheus.CounterVec
	refusals *prometheus.CounterVec

	reqN    atomic.Uint64
	waitMu  sync.Mutex
	waiters map[string]chan json.RawMessage // reply channel → answers
}

func newAPI(s *Server) *api {
	a := &api{s: s, on: s.cfg.API.Key != "", ctl: newSubTable(s.broker), waiters: map[string]chan json.RawMessage{}}
	a.keyHash = sha256.Sum256([]byte(s.cfg.API.Key))
	var b [6]byte
	randRead(b[:])
	a.tag = encodeID(b[:])
	s.ids.prefix = b
	a.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "scc_frontend_api_requests_total", Help: "Server API requests served, by method."}, []string{"method"})
	a.refusals = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "scc_frontend_api_refusals_total", Help: "Server API requests refused, by reason."}, []string{"reason"})
	for _, r := range []string{apiRefuseMethod, apiRefuseNoKey, apiRefuseBadKey, apiRefuseTooLarge, apiRefuseSlow, apiRefuseMalformed, apiRefuseUnknown, apiRefuseInvalid, apiRefuseUnavailable} {
		a.refusals.WithLabelValues(r)
	}
	s.reg.MustRegister(a.requests, a.refusals)
	if lb, ok := s.broker.(*LocalBroker); ok {
		lb.dedup = dedupe.New(s.cfg.API.IdempotencyKeys, s.cfg.API.IdempotencyTTL)
	}
	return a
}

// start subscribes this frontend's control channels; called once the
// broker has started.
func (a *api) start() error {
	if !a.on {
		return nil
	}
	ctx, cancel := context.WithTimeout(a.s.ctx, a.s.cfg.AckTimeout)
	defer cancel()
	for _, ch := range []string{nodeChanPrefix + a.tag, nodesChan} {
		if err := a.s.broker.Subscribe(ctx, ch); err != nil {
			return fmt.Errorf("subscribing %s: %w", ch, err)
		}
	}
	return nil
}

// isReserved reports whether channel is an internal channel.
func isReserved(channel string) bool { return strings.HasPrefix(channel, ReservedPrefix) }

// userOf returns the user a token's sub claim names, or "".
func userOf(info *tokenInfo) string {
	if info == nil {
		return ""
	}
	switch v := info.claims["sub"].(type) {
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case json.Number:
		return v.String()
	}
	return ""
}

// bindUser moves sock to the user channel of its current token. A new
// subscription waits for the broker (bounded by AckTimeout), so a socket
// whose authentication has been answered is reachable by user operations.
func (a *api) bindUser(sock *Socket, user string) {
	if !a.on {
		return
	}
	sock.mu.Lock()
	old := sock.apiUser
	if old == user || sock.apiGone {
		sock.mu.Unlock()
		return
	}
	sock.apiUser = user
	sock.mu.Unlock()
	if old != "" {
		a.ctl.unsubscribe(userChanPrefix+old, sock)
	}
	if user == "" {
		return
	}
	ch := userChanPrefix + user
	ctx, cancel := context.WithTimeout(a.s.ctx, a.s.cfg.AckTimeout)
	err := a.ctl.subscribeWait(ctx, ch, sock, a.s.subscribed(ch))
	cancel()
	sock.mu.Lock()
	stale := sock.apiUser != user // torn down or re-bound meanwhile
	if err != nil && !stale {
		sock.apiUser = ""
	}
	sock.mu.Unlock()
	if err != nil {
		a.s.log.Warn("subscribing user control channel", "conn", sock.id, "err", err)
		return
	}
	if stale {
		a.ctl.unsubscribe(ch, sock)
	}
}

// control handles a message on an internal channel.
func (a *api) control(channel string, data []byte) {
	switch {
	case strings.HasPrefix(channel, userChanPrefix):
		var m controlMsg
		if json.Unmarshal(data, &m) != nil {
			return
		}
		for _, sock := range a.ctl.sockets(channel) {
			a.apply(sock, m)
		}
	case strings.HasPrefix(channel, replyChanPrefix):
		a.waitMu.Lock()
		w := a.waiters[channel]
		a.waitMu.Unlock()
		if w != nil {
			select {
			case w <- append(json.RawMessage(nil), data...):
			default:
			}
		}
	case channel == nodesChan || channel == nodeChanPrefix+a.tag:
		var m controlMsg
		if json.Unmarshal(data, &m) != nil {
			return
		}
		switch m.Op {
		case "disconnect":
			if sock := a.s.SocketByID(m.Client); sock != nil {
				a.apply(sock, m)
			}
		case "query":
			if !strings.HasPrefix(m.Reply, replyChanPrefix) {
				return
			}
			b, err := json.Marshal(a.answer(m))
			if err == nil {
				_ = a.s.broker.Publish(a.s.ctx, m.Reply, b)
			}
		}
	}
}

// controlMsg is a control message on an internal channel.
type controlMsg struct {
	Op      string `json:"op"`
	Code    int    `json:"code,omitempty"`
	Reason  string `json:"reason,omitempty"`
	Channel string `json:"channel,omitempty"`
	Client  string `json:"client,omitempty"`
	What    string `json:"what,omitempty"`
	Pattern string `json:"pattern,omitempty"`
	Reply   string `json:"reply,omitempty"`
}

func (a *api) apply(sock *Socket, m controlMsg) {
	switch m.Op {
	case "disconnect":
		sock.Close(m.Code, m.Reason)
	case "unsubscribe":
		_ = sock.KickOut(m.Channel, m.Reason)
	}
}

// nodeAnswer is one frontend's answer to a query.
type nodeAnswer struct {
	Node      string         `json:"node"`
	Channels  map[string]int `json:"channels,omitempty"`
	Truncated bool           `json:"truncated,omitempty"`
	Info      *NodeInfo      `json:"info,omitempty"`
}

// NodeInfo is one frontend's load, as the info method reports it.
type NodeInfo struct {
	Node          string  `json:"node"`
	Connections   int64   `json:"num_clients"`
	Subscriptions int64   `json:"num_subs"`
	Channels      int64   `json:"num_channels"`
	MessagesIn    uint64  `json:"messages_in"`
	MessagesOut   uint64  `json:"messages_out"`
	Uptime        float64 `json:"uptime_seconds"`
}

func (a *api) answer(m controlMsg) nodeAnswer {
	ans := nodeAnswer{Node: a.tag}
	switch m.What {
	case "channels":
		ans.Channels, ans.Truncated = a.s.subs.counts(func(ch string) bool {
			return m.Pattern == "" || rules.Glob(m.Pattern, ch)
		}, a.s.cfg.API.MaxQueryChannels)
	case "info":
		st := a.s.Stats()
		ans.Info = &NodeInfo{Node: a.tag, Connections: st.Connections, Subscriptions: st.Subscriptions, Channels: st.Channels,
			MessagesIn: st.MessagesIn, MessagesOut: st.MessagesOut, Uptime: time.Since(a.s.start).Seconds()}
	}
	return ans
}

// query asks every frontend and collects their answers.
func (a *api) query(ctx context.Context, m controlMsg) (answers []nodeAnswer, expected int, err error) {
	expected = 1
	if fc, ok := a.s.broker.(FrontendCounter); ok {
		expected = fc.AliveFrontends()
	} else if _, local := a.s.broker.(*LocalBroker); !local {
		expected = 0 // unknown: wait out the bound
	}
	m.Reply = replyChanPrefix + a.tag + ":" + strconv.FormatUint(a.reqN.Add(1), 10)
	w := make(chan json.RawMessage, expected+64) // answers beyond it are dropped: partial
	a.waitMu.Lock()
	a.waiters[m.Reply] = w
	a.waitMu.Unlock()
	defer func() {
		a.waitMu.Lock()
		delete(a.waiters, m.Reply)
		a.waitMu.Unlock()
	}()
	ctx, cancel := context.WithTimeout(ctx, a.s.cfg.API.QueryTimeout)
	defer cancel()
	if err := a.s.broker.Subscribe(ctx, m.Reply); err != nil {
		return nil, expected, err
	}
	defer a.s.broker.Unsubscribe(m.Reply)
	b, _ := json.Marshal(m)
	if err := a.s.broker.Publish(ctx, nodesChan, b); err != nil {
		return nil, expected, err
	}
	seen := map[string]bool{}
	for expected == 0 || len(answers) < expected {
		select {
		case raw := <-w:
			var ans nodeAnswer
			if json.Unmarshal(raw, &ans) == nil && !seen[ans.Node] {
				seen[ans.Node] = true
				answers = append(answers, ans)
			}
		case <-ctx.Done():
			return answers, expected, nil
		}
	}
	return answers, expected, nil
}

// APIHandler serves the server API under /api/; nil when it is off.
func (s *Server) APIHandler() http.Handler {
	if !s.api.on {
		return nil
	}
	return http.HandlerFunc(s.api.serveHTTP)
}

// apiError is the body of a refused request.
type apiError struct {
	Error struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func (a *api) refuse(w http.ResponseWriter, status int, reason, msg string) {
	a.refusals.WithLabelValues(reason).Inc()
	var e apiError
	e.Error.Code, e.Error.Message = status, msg
	writeJSON(w, status, e)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":{"code":500,"message":"encoding the response"}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

func (a *api) authorized(r *http.Request) (ok bool, given bool) {
	key := r.Header.Get("X-API-Key")
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, rest, _ := strings.Cut(h, " ")
		if strings.EqualFold(scheme, "apikey") {
			key = strings.TrimSpace(rest)
		}
	}
	if key == "" {
		return false, false
	}
	// Hashes have a fixed length, so the comparison's time says nothing
	// about the key's length either.
	h := sha256.Sum256([]byte(key))
	return subtle.ConstantTimeCompare(h[:], a.keyHash[:]) == 1, true
}

func (a *api) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		a.refuse(w, http.StatusMethodNotAllowed, apiRefuseMethod, "use POST")
		return
	}
	if ok, given := a.authorized(r); !ok {
		if !given {
			a.refuse(w, http.StatusUnauthorized, apiRefuseNoKey, "missing API key: send Authorization: apikey <key>")
		} else {
			a.refuse(w, http.StatusForbidden, apiRefuseBadKey, "wrong API key")
		}
		return
	}
	method := strings.TrimPrefix(r.URL.Path, "/api/")
	h, ok := apiMethods[method]
	if !ok {
		a.refuse(w, http.StatusNotFound, apiRefuseUnknown, fmt.Sprintf("unknown method %q", method))
		return
	}
	// A deadline on this request's reads only; the connection's next
	// request gets the server's usual header timeout.
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(a.s.cfg.API.ReadTimeout))
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, a.s.cfg.API.MaxBodyBytes))
	_ = rc.SetReadDeadline(time.Time{})
	if err != nil {
		var mbe *http.MaxBytesError
		var ne net.Error
		switch {
		case errors.As(err, &mbe):
			a.refuse(w, http.StatusRequestEntityTooLarge, apiRefuseTooLarge, fmt.Sprintf("body larger than %d bytes", mbe.Limit))
		case errors.As(err, &ne) && ne.Timeout():
			w.Header().Set("Connection", "close")
			a.refuse(w, http.StatusRequestTimeout, apiRefuseSlow, fmt.Sprintf("body not read within %v", a.s.cfg.API.ReadTimeout))
		default:
			a.refuse(w, http.StatusBadRequest, apiRefuseMalformed, "reading body: "+err.Error())
		}
		return
	}
	if len(bytes.TrimSpace(body)) == 0 {
		body = []byte("{}")
	}
	if !utf8.Valid(body) {
		// encoding/json would pass invalid UTF-8 through in raw data, and
		// clients close a connection whose text frame carries it (1007).
		a.refuse(w, http.StatusBadRequest, apiRefuseMalformed, "malformed JSON body: not valid UTF-8")
		return
	}
	if err := a.s.begin(); err != nil {
		a.refuse(w, http.StatusServiceUnavailable, apiRefuseUnavailable, err.Error())
		return
	}
	res, status, reason, err := h(a, r.Context(), body)
	if err != nil {
		a.refuse(w, status, reason, err.Error())
		return
	}
	a.requests.WithLabelValues(method).Inc()
	writeJSON(w, http.StatusOK, map[string]any{"result": res})
}

type apiMethod func(a *api, ctx context.Context, body []byte) (result any, status int, reason string, err error)

var apiMethods = map[string]apiMethod{
	"publish":     (*api).publish,
	"broadcast":   (*api).broadcast,
	"disconnect":  (*api).disconnect,
	"unsubscribe": (*api).unsubscribe,
	"channels":    (*api).channels,
	"info":        (*api).info,

	"presence":       (*api).presence, // presence.go
	"presence_stats": (*api).presenceStats,
}

// decode reads one JSON object strictly: unknown fields and trailing data
// are errors, so a typo in a parameter is not silently ignored.
func decode(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("malformed JSON body: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("malformed JSON body: data after the object")
	}
	return nil
}

func malformed(err error) (any, int, string, error) {
	return nil, http.StatusBadRequest, apiRefuseMalformed, err
}

func invalid(format string, args ...any) (any, int, string, error) {
	return nil, http.StatusBadRequest, apiRefuseInvalid, fmt.Errorf(format, args...)
}

func unavailable(err error) (any, int, string, error) {
	return nil, http.StatusServiceUnavailable, apiRefuseUnavailable, err
}

func (a *api) checkChannel(ch string) error {
	switch {
	case ch == "":
		return errors.New("channel is empty")
	case len(ch) > a.s.cfg.MaxChannelLength:
		return fmt.Errorf("channel is longer than %d bytes", a.s.cfg.MaxChannelLength)
	case isReserved(ch):
		return fmt.Errorf("channel names starting with %q are reserved", ReservedPrefix)
	}
	return nil
}

// publishOne routes a publish the way a client publish goes (bypassing
// client publish permissions), with an optional idempotency key. Through
// a broker that acknowledges later (AckedPublisher) it returns the
// channel that tells when the owner accepted it; otherwise nil, the
// publish accepted already.
func (a *api) publishOne(ctx context.Context, ch string, data json.RawMessage, key string) (<-chan error, error) {
	if ap, ok := a.s.broker.(AckedPublisher); ok {
		return ap.PublishAcked(ch, data, key)
	}
	if key != "" {
		if ip, ok := a.s.broker.(IdempotentPublisher); ok {
			return nil, ip.PublishIdempotent(ctx, ch, data, key)
		}
	}
	return nil, a.s.broker.Publish(ctx, ch, data)
}

// errNotAcknowledged answers a publish its owner did not acknowledge
// within AckTimeout: it may still be delivered.
var errNotAcknowledged = errors.New("the channel's broker did not acknowledge the publish in time; it may still be delivered")

// awaitAck waits, at most AckTimeout from start, for done (nil: nothing
// to wait for).
func (a *api) awaitAck(ctx context.Context, start time.Time, done <-chan error) error {
	if done == nil {
		return nil
	}
	select {
	case err := <-done: // acknowledged already, whatever the time
		return err
	default:
	}
	t := time.NewTimer(time.Until(start.Add(a.s.cfg.AckTimeout)))
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
		return errNotAcknowledged
	case <-ctx.Done():
		return ctx.Err()
	}
}

// MaxIdempotencyKeyBytes is the longest idempotency key a server API
// publish may carry; a longer one is refused as invalid.
const MaxIdempotencyKeyBytes = 256

// checkIdempotencyKey refuses a key longer than MaxIdempotencyKeyBytes.
func checkIdempotencyKey(key string) error {
	if len(key) > MaxIdempotencyKeyBytes {
		return fmt.Errorf("idempotency_key is %d bytes, at most %d are allowed", len(key), MaxIdempotencyKeyBytes)
	}
	return nil
}

type publishParams struct {
	Channel        string          `json:"channel"`
	Data           json.RawMessage `json:"data"`
	IdempotencyKey string          `json:"idempotency_key"`
}

func (a *api) publish(ctx context.Context, body []byte) (any, int, string, error) {
	var p publishParams
	if err := decode(body, &p); err != nil {
		return malformed(err)
	}
	if err := a.checkChannel(p.Channel); err != nil {
		return invalid("publish: %v", err)
	}
	if len(p.Data) == 0 {
		return invalid("publish: data is required")
	}
	if err := checkIdempotencyKey(p.IdempotencyKey); err != nil {
		return invalid("publish: %v", err)
	}
	start := time.Now()
	done, err := a.publishOne(ctx, p.Channel, p.Data, p.IdempotencyKey)
	if err == nil {
		err = a.awaitAck(ctx, start, done)
	}
	if err != nil {
		return unavailable(fmt.Errorf("publish: %w", err))
	}
	return struct{}{}, 0, "", nil
}

type broadcastParams struct {
	Channels       []string        `json:"channels"`
	Data           json.RawMessage `json:"data"`
	IdempotencyKey string          `json:"idempotency_key"`
}

// broadcastResult has one entry per channel, in order: {} or {"error":...}.
type broadcastResult struct {
	Responses []map[string]any `json:"responses"`
}

func (a *api) broadcast(ctx context.Context, body []byte) (any, int, string, error) {
	var p broadcastParams
	if err := decode(body, &p); err != nil {
		return malformed(err)
	}
	if len(p.Channels) == 0 || len(p.Channels) > a.s.cfg.API.MaxBroadcastChannels {
		return invalid("broadcast: between 1 and %d channels", a.s.cfg.API.MaxBroadcastChannels)
	}
	if len(p.Data) == 0 {
		return invalid("broadcast: data is required")
	}
	if err := checkIdempotencyKey(p.IdempotencyKey); err != nil {
		return invalid("broadcast: %v", err)
	}
	for _, ch := range p.Channels {
		if err := a.checkChannel(ch); err != nil {
			return invalid("broadcast: %q: %v", ch, err)
		}
	}
	res := broadcastResult{Responses: make([]map[string]any, len(p.Channels))}
	// Every channel's publish goes out before any acknowledgement is
	// awaited, so a broadcast waits about one round trip, not one per
	// channel.
	start := time.Now()
	dones := make([]<-chan error, len(p.Channels))
	errs := make([]error, len(p.Channels))
	for i, ch := range p.Channels {
		dones[i], errs[i] = a.publishOne(ctx, ch, p.Data, p.IdempotencyKey)
	}
	for i := range p.Channels {
		if errs[i] == nil {
			errs[i] = a.awaitAck(ctx, start, dones[i])
		}
		res.Responses[i] = map[string]any{}
		if errs[i] != nil {
			res.Responses[i]["error"] = map[string]any{"code": http.StatusServiceUnavailable, "message": errs[i].Error()}
		}
	}
	return res, 0, "", nil
}

type disconnectParams struct {
	User   string `json:"user"`
	Client string `json:"client"`
	Code   int    `json:"code"`
	Reason string `json:"reason"`
}

// DefaultDisconnectCode is the close code of an API disconnect that names
// none.
const DefaultDisconnectCode = 4000

func (a *api) disconnect(ctx context.Context, body []byte) (any, int, string, error) {
	var p disconnectParams
	if err := decode(body, &p); err != nil {
		return malformed(err)
	}
	if (p.User == "") == (p.Client == "") {
		return invalid("disconnect: give exactly one of user and client")
	}
	if p.Code == 0 {
		p.Code = DefaultDisconnectCode
	}
	if p.Code != protocol.CloseNormal && (p.Code < 4000 || p.Code > 4999) {
		return invalid("disconnect: code %d must be 1000 or within 4000-4999", p.Code)
	}
	if len(p.Reason) > 123 {
		return invalid("disconnect: reason is longer than 123 bytes")
	}
	m := controlMsg{Op: "disconnect", Code: p.Code, Reason: p.Reason, Client: p.Client}
	ch := userChanPrefix + p.User
	if p.Client != "" {
		if sock := a.s.SocketByID(p.Client); sock != nil {
			a.apply(sock, m)
			return struct{}{}, 0, "", nil
		}
		if len(p.Client) < nodeTagLen || p.Client[:nodeTagLen] == a.tag {
			return struct{}{}, 0, "", nil // not here, and nowhere else
		}
		ch = nodeChanPrefix + p.Client[:nodeTagLen]
	}
	b, _ := json.Marshal(m)
	if err := a.s.broker.Publish(ctx, ch, b); err != nil {
		return unavailable(fmt.Errorf("disconnect: %w", err))
	}
	return struct{}{}, 0, "", nil
}

type unsubscribeParams struct {
	User    string `json:"user"`
	Channel string `json:"channel"`
}

func (a *api) unsubscribe(ctx context.Context, body []byte) (any, int, string, error) {
	var p unsubscribeParams
	if err := decode(body, &p); err != nil {
		return malformed(err)
	}
	if p.User == "" {
		return invalid("unsubscribe: user is required")
	}
	if err := a.checkChannel(p.Channel); err != nil {
		return invalid("unsubscribe: %v", err)
	}
	b, _ := json.Marshal(controlMsg{Op: "unsubscribe", Channel: p.Channel})
	if err := a.s.broker.Publish(ctx, userChanPrefix+p.User, b); err != nil {
		return unavailable(fmt.Errorf("unsubscribe: %w", err))
	}
	return struct{}{}, 0, "", nil
}

type channelsParams struct {
	Pattern string `json:"pattern"`
}

// ChannelInfo is one channel in the channels method's result.
type ChannelInfo struct {
	NumClients int `json:"num_clients"`
}

type channelsResult struct {
	Channels  map[string]ChannelInfo `json:"channels"`
	Nodes     int                    `json:"nodes"`
	Expected  int                    `json:"expected_nodes"`
	Partial   bool                   `json:"partial"`
	Truncated bool                   `json:"truncated"`
}

func (a *api) channels(ctx context.Context, body []byte) (any, int, string, error) {
	var p channelsParams
	if err := decode(body, &p); err != nil {
		return malformed(err)
	}
	answers, expected, err := a.query(ctx, controlMsg{Op: "query", What: "channels", Pattern: p.Pattern})
	if err != nil {
		return unavailable(fmt.Errorf("channels: %w", err))
	}
	res := channelsResult{Channels: map[string]ChannelInfo{}, Nodes: len(answers), Expected: expected, Partial: len(answers) < expected}
	for _, ans := range answers {
		res.Truncated = res.Truncated || ans.Truncated
		for ch, n := range ans.Channels {
			ci := res.Channels[ch]
			ci.NumClients += n
			res.Channels[ch] = ci
		}
	}
	return res, 0, "", nil
}

type infoResult struct {
	Nodes    []NodeInfo `json:"nodes"`
	Expected int        `json:"expected_nodes"`
	Partial  bool       `json:"partial"`
}

func (a *api) info(ctx context.Context, body []byte) (any, int, string, error) {
	var p struct{}
	if err := decode(body, &p); err != nil {
		return malformed(err)
	}
	answers, expected, err := a.query(ctx, controlMsg{Op: "query", What: "info"})
	if err != nil {
		return unavailable(fmt.Errorf("info: %w", err))
	}
	res := infoResult{Nodes: []NodeInfo{}, Expected: expected, Partial: len(answers) < expected}
	for _, ans := range answers {
		if ans.Info != nil {
			res.Nodes = append(res.Nodes, *ans.Info)
		}
	}
	return res, 0, "", nil
}
