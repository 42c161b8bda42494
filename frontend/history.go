package frontend

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sccgo/sccgo/internal/history"
	"github.com/sccgo/sccgo/protocol"
)

// Results of a #subscribe of a channel with history (bounded: metric
// labels): recovered, position (no recovery asked: the client learns
// where it starts), error (the history was not reached in time), or the
// history.Reason* word why recovery was impossible.
const (
	recoveryRecovered = "recovered"
	recoveryPosition  = "position"
	recoveryError     = "error"
)

var recoveryResults = []string{recoveryRecovered, recoveryPosition, recoveryError,
	history.ReasonEpoch, history.ReasonGone, history.ReasonLimit, history.ReasonAhead, history.ReasonDisabled}

// historyState is the frontend's side of channel history: the standalone
// store (nil in a cluster, where brokers keep it), the broker's recovery
// seam, and the bound on recoveries in progress.
type historyState struct {
	store *history.Store
	rec   Recoverer
	sem   chan struct{}

	results   *prometheus.CounterVec // result
	replayed  prometheus.Counter
	recoverDt prometheus.Histogram
}

func (s *Server) initHistory() {
	h := &historyState{sem: make(chan struct{}, s.cfg.RecoveryConcurrency)}
	h.results = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "scc_frontend_recoveries_total",
		Help: "Subscribes of channels with history, by result: recovered, position (no recovery asked), error (history not reached in time), or why recovery was impossible (epoch, gone, limit, ahead, disabled)."}, []string{"result"})
	for _, r := range recoveryResults {
		h.results.WithLabelValues(r)
	}
	h.replayed = prometheus.NewCounter(prometheus.CounterOpts{Name: "scc_frontend_recovered_publications_total",
		Help: "Publications replayed to recovering subscribers."})
	h.recoverDt = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "scc_frontend_recovery_seconds",
		Help:    "Time from a #subscribe of a channel with history to its acknowledgement, recovery included.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 4, 9)})
	s.reg.MustRegister(h.results, h.replayed, h.recoverDt)
	if lb, ok := s.broker.(*LocalBroker); ok {
		st, err := history.New(s.cfg.History)
		if err == nil { // validated with the config
			h.store = st
			lb.hist, lb.histOpts = st, s.historyOptions
			history.Register(s.reg, "frontend", st)
		}
	}
	h.rec, _ = s.broker.(Recoverer)
	s.hist = h
}

// startHistory runs the standalone store's sweeper until shutdown.
func (s *Server) startHistory() {
	if st := s.hist.store; st != nil {
		s.wg.Go(func() { st.Run(s.done) })
	}
}

// historyOptions returns channel's history settings from its rule.
func (s *Server) historyOptions(channel string) history.Options {
	h := s.rules.set.Options(channel).History
	return history.Options{Size: h.Size, TTL: time.Duration(h.TTL)}
}

// hasHistory reports whether channel keeps a history that this server
// reaches (its rule says so, and the broker keeps or reaches histories).
func (s *Server) hasHistory(channel string) bool {
	return s.hist != nil && s.hist.rec != nil && s.historyOptions(channel).Enabled()
}

// History returns up to limit of channel's most recent publications and
// its position, from the owning broker (the server API's history).
func (s *Server) History(ctx context.Context, channel string, limit int) ([]history.Pub, history.Position, error) {
	if err := s.begin(); err != nil {
		return nil, history.Position{}, err
	}
	if s.hist.rec == nil || !s.historyOptions(channel).Enabled() {
		return nil, history.Position{}, nil
	}
	return s.hist.rec.History(ctx, channel, limit)
}

// DeliverPos implements PositionSink: Deliver for a publication of a
// channel with history, whose #publish frame carries its offset and epoch.
func (s *Server) DeliverPos(channel string, data []byte, offset uint64, epoch string) {
	if isReserved(channel) {
		s.api.control(channel, data)
		return
	}
	frame := protocol.AppendPublishPos(make([]byte, 0, len(channel)+len(data)+80), channel, data, offset, epoch)
	n := s.subs.fanout(channel, frame)
	if n > 0 {
		s.stat.messagesOut.Add(uint64(n))
		s.m.messagesOut.Add(float64(n))
	}
}

// historySubscribe completes the #subscribe of a channel with history,
// which the socket is already listed in: it joins the channel hidden,
// waits for the broker subscription, asks for the channel's position and
// the publications the client missed (when its data asks to recover), and
// at the point of the channel's delivery order the answer belongs to,
// queues the acknowledgement ({channel, recovered, offset, epoch}) and
// the missed publications and makes the socket a live subscriber. It
// reports false when the channel has no history here (the caller then
// subscribes as usual).
func (s *Socket) historySubscribe(p *protocol.Packet, ch string, data json.RawMessage) bool {
	srv := s.srv
	if !srv.hasHistory(ch) {
		return false
	}
	start := time.Now()
	var from history.Position
	asked := false
	if pos, ok := protocol.RecoverRequest(data); ok {
		asked = true
		if srv.rules.set.Options(ch).Recovery {
			from = history.Position{Offset: pos.Offset, Epoch: pos.Epoch}
		}
	}
	cid := cloneRaw(p.CID)
	pk := &protocol.Packet{CID: cid}
	done := make(chan error, 1)
	st, err := srv.subs.joinHidden(ch, s, subWaiter{s: s, cid: cid, done: done}, srv.cfg.MaxPendingSubscribes)
	if err != nil {
		s.dropChannel(ch)
		srv.m.subscribeErrors.WithLabelValues(subRejectPending).Inc()
		s.fail(p, protocol.NewError(protocol.ErrNameBroker, fmt.Sprintf("Failed to subscribe socket to the %s channel - %v", ch, err)))
		return true
	}
	if !s.hasChannel(ch) {
		srv.subs.unsubscribe(ch, s)
	}
	h := srv.hist
	run := func(held bool) {
		if held {
			defer func() { <-h.sem }()
		}
		ctx, cancel := context.WithTimeout(srv.ctx, srv.cfg.AckTimeout)
		defer cancel()
		switch st {
		case joinStart:
			srv.subs.complete(ctx, ch, srv.subscribed(ch))
		}
		var err error
		if st != joinReady {
			select {
			case err = <-done:
			case <-ctx.Done():
				err = ctx.Err()
			}
		}
		if err == nil && !held {
			select {
			case h.sem <- struct{}{}:
				defer func() { <-h.sem }()
			case <-ctx.Done():
				err = ctx.Err()
			}
		}
		// 0: waiting, 1: attached, 2: given up. attach may run on a
		// broker link's reader after Recover gave up.
		var state atomic.Int32
		if err == nil {
			err = h.rec.Recover(ctx, ch, from, srv.cfg.RecoveryMaxPublications, func(r history.Result) {
				if !state.CompareAndSwap(0, 1) {
					return
				}
				s.attachRecovered(pk, ch, r, asked)
			})
		}
		if state.Load() == 1 {
			h.recoverDt.Observe(time.Since(start).Seconds())
			return
		}
		if err == nil {
			err = context.DeadlineExceeded
		}
		if !state.CompareAndSwap(0, 2) {
			return
		}
		h.results.WithLabelValues(recoveryError).Inc()
		srv.subs.unsubscribe(ch, s)
		if s.dropChannel(ch) {
			srv.m.subscribeErrors.WithLabelValues(subRejectBroker).Inc()
			s.fail(pk, protocol.NewError(protocol.ErrNameBroker, fmt.Sprintf("Failed to subscribe socket to the %s channel - %v", ch, err)))
		}
	}
	if _, ok := srv.broker.(*LocalBroker); ok && st != joinQueued {
		// Standalone nothing waits on the network: answer inline, as
		// plain subscribes are, unless recoveries are at their cap.
		select {
		case h.sem <- struct{}{}:
			run(true)
			return true
		default:
		}
	}
	srv.wg.Go(func() { run(false) })
	return true
}

// grantHistory subscribes the socket to ch, a channel with history, on
// its behalf (a connect hook's channels): the socket joins at a point of
// the channel's delivery order and gets the position there, which the
// #handshake answer carries so that the client has a start point to
// recover from. Like subscribeGranted, it checks the socket's channel
// limit and leaves nothing behind for a socket that closed meanwhile.
func (s *Socket) grantHistory(ctx context.Context, ch string) (history.Position, *protocol.Error) {
	srv := s.srv
	fail := func(err error) (history.Position, *protocol.Error) {
		return history.Position{}, protocol.NewError(protocol.ErrNameBroker, fmt.Sprintf("Failed to subscribe socket to the %s channel - %v", ch, err))
	}
	if ok, reason := srv.reserveSub(s); !ok {
		srv.m.subscribeErrors.WithLabelValues(reason).Inc()
		return fail(errors.New("the server is at its subscription limit"))
	}
	already, perr := s.listChannel(ch)
	if perr != nil || already {
		srv.releaseSubs(s, 1)
		return history.Position{}, perr
	}
	ctx, cancel := context.WithTimeout(ctx, srv.cfg.AckTimeout)
	defer cancel()
	done := make(chan error, 1)
	st, err := srv.subs.joinHidden(ch, s, subWaiter{s: s, done: done}, math.MaxInt32)
	if err != nil {
		s.dropChannel(ch)
		return fail(err)
	}
	if !s.hasChannel(ch) {
		srv.subs.unsubscribe(ch, s) // torn down meanwhile
	}
	if st == joinStart {
		srv.subs.complete(ctx, ch, srv.subscribed(ch))
	}
	if st != joinReady {
		select {
		case err = <-done:
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	got := make(chan history.Position, 1)
	// 0: waiting, 1: attached, 2: given up.
	var state atomic.Int32
	if err == nil {
		err = srv.hist.rec.Recover(ctx, ch, history.Position{}, 0, func(r history.Result) {
			if !state.CompareAndSwap(0, 1) {
				return
			}
			srv.subs.reveal(ch, s, func() {})
			got <- r.Position
		})
	}
	if !state.CompareAndSwap(0, 2) {
		return <-got, nil
	}
	if err == nil {
		err = context.DeadlineExceeded
	}
	srv.subs.unsubscribe(ch, s)
	s.dropChannel(ch)
	return fail(err)
}

// attachRecovered runs at the channel's point of delivery order: it
// queues the acknowledgement and the recovered publications, then makes
// the socket a live subscriber.
func (s *Socket) attachRecovered(p *protocol.Packet, ch string, r history.Result, asked bool) {
	srv := s.srv
	h := srv.hist
	if r.Recovered && !srv.replayFits(ch, r.Pubs) {
		// The replay would overflow the socket's queue and close it as a
		// slow consumer, which would reconnect and try again: too much
		// missed.
		r = history.Result{Position: r.Position, Reason: history.ReasonLimit}
	}
	ack := protocol.SubscribeRecovery{Channel: ch, Recovered: r.Recovered, Offset: r.Position.Offset, Epoch: r.Position.Epoch}
	result := recoveryPosition
	switch {
	case asked && r.Recovered:
		result = recoveryRecovered
	case asked:
		ack.Reason = r.Reason
		if ack.Reason == "" {
			ack.Reason = history.ReasonDisabled // recovery not allowed by the rule
		}
		result = ack.Reason
	default:
		ack.Recovered = false
	}
	body, _ := json.Marshal(ack)
	ok := srv.subs.reveal(ch, s, func() {
		s.reply(p, body)
		if !asked {
			return
		}
		for _, pub := range r.Pubs {
			s.send(protocol.AppendPublishPos(nil, ch, pub.Data, pub.Offset, r.Position.Epoch))
		}
	})
	if ok {
		h.results.WithLabelValues(result).Inc()
		if asked && r.Recovered {
			h.replayed.Add(float64(len(r.Pubs)))
		}
	}
}

func init() { apiMethods["history"] = (*api).history }

type historyParams struct {
	Channel string `json:"channel"`
	// Limit is how many of the most recent publications to return
	// (default 10, at most SCC_RECOVERY_MAX_PUBLICATIONS).
	Limit *int `json:"limit"`
}

// HistoryPublication is one publication in the server API's history.
type HistoryPublication struct {
	Offset uint64          `json:"offset"`
	Time   int64           `json:"time"` // Unix milliseconds when the owning broker appended it
	Data   json.RawMessage `json:"data"`
}

type historyResult struct {
	Publications []HistoryPublication `json:"publications"`
	Offset       uint64               `json:"offset"`
	Epoch        string               `json:"epoch"`
}

// history answers the server API's history: a channel's most recent
// publications, oldest first, and its position.
func (a *api) history(ctx context.Context, body []byte) (any, int, string, error) {
	var p historyParams
	if err := decode(body, &p); err != nil {
		return malformed(err)
	}
	if err := a.checkChannel(p.Channel); err != nil {
		return invalid("history: %v", err)
	}
	limit := 10
	if p.Limit != nil {
		limit = *p.Limit
	}
	if limit < 0 || limit > a.s.cfg.RecoveryMaxPublications {
		return invalid("history: limit must be between 0 and %d", a.s.cfg.RecoveryMaxPublications)
	}
	if !a.s.historyOptions(p.Channel).Enabled() {
		return invalid("history: channel %q has no history (see the history option of channel rules)", p.Channel)
	}
	pubs, pos, err := a.s.History(ctx, p.Channel, max(limit, 1))
	if err != nil {
		return unavailable(fmt.Errorf("history: %w", err))
	}
	if limit == 0 {
		pubs = nil
	}
	res := historyResult{Publications: make([]HistoryPublication, 0, len(pubs)), Offset: pos.Offset, Epoch: pos.Epoch}
	for _, pub := range pubs {
		res.Publications = append(res.Publications, HistoryPublication{Offset: pub.Offset, Time: pub.Time / 1e6, Data: pub.Data})
	}
	return res, 0, "", nil
}

// replayFits reports whether pubs, as #publish frames, take at most half
// of a socket's queue (SCC_QUEUE_MAX_BYTES, SCC_QUEUE_MAX_MESSAGES).
func (s *Server) replayFits(ch string, pubs []history.Pub) bool {
	if 2*len(pubs) > s.cfg.QueueMaxMessages {
		return false
	}
	n := 0
	for _, p := range pubs {
		n += len(p.Data) + len(ch) + 80
	}
	return 2*n <= s.cfg.QueueMaxBytes
}
