package wsconn

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// Overflow reasons passed to Owner.QueueOverflow.
const (
	OverflowBytes    = "bytes"
	OverflowMessages = "messages"
)

// Default queue bounds.
const (
	DefaultMaxBytes     = 1 << 20
	DefaultMaxMessages  = 4096
	DefaultWriteTimeout = 10 * time.Second
)

// maxPooledBatch is the largest batch buffer kept for reuse; bigger ones are
// left to the garbage collector so one burst does not pin memory.
const maxPooledBatch = 64 << 10

// Engine holds what every Queue of a server shares: bounds, the batching
// rule, accounting hooks and the WaitGroup that owns writer goroutines.
// Set the fields before the first Queue is used and do not change them.
type Engine struct {
	// MaxBytes bounds the bytes queued per connection. Default
	// DefaultMaxBytes.
	MaxBytes int
	// MaxMessages bounds the packets queued per connection. Default
	// DefaultMaxMessages.
	MaxMessages int
	// WriteTimeout bounds each frame write. Default DefaultWriteTimeout.
	WriteTimeout time.Duration
	// MessageType of data frames. Default websocket.MessageText.
	MessageType websocket.MessageType
	// Batch joins several packets into one frame, appending to dst. Nil
	// writes each packet as its own frame.
	Batch func(dst []byte, packets [][]byte) []byte
	// OnFrame, if set, is called after each data frame is written with the
	// number of packets in it and its size in bytes.
	OnFrame func(packets, bytes int)
	// WG owns the writer goroutines; the server waits on it at shutdown.
	WG *sync.WaitGroup
	// Linger is how long a writer waits for more packets after draining
	// its queue before it exits. A connection that receives steadily
	// keeps one writer (whose stack has grown to fit the write path)
	// instead of starting a fresh goroutine, and growing its stack, for
	// every burst; an idle connection holds no goroutine once Linger has
	// passed. 0 exits at once.
	Linger time.Duration
	// Coalesce is the longest gap between two data frames of one
	// connection for packets queued with EnqueueCoalesced: the latency
	// budget of coalescing. A writer with only such packets to send
	// within the gap in force of its previous frame waits out the rest of
	// it, so a busy connection gets few large frames (one syscall each, on
	// both ends) instead of one frame per packet; a connection that
	// receives less often than once per gap sees no delay at all. The
	// wait ends early once CoalesceBytes are queued, or when a packet is
	// queued with Enqueue (a reply someone waits for), which then leaves
	// at once together with everything before it. The gap in force is
	// Coalesce, or with CoalesceDynamic the one last given to
	// SetCoalesce, at most Coalesce. 0 writes at once.
	Coalesce time.Duration
	// CoalesceBytes ends a coalescing wait early. Default 16 KiB.
	CoalesceBytes int
	// CoalesceDynamic makes the gap the one last given to SetCoalesce
	// (initially 0) instead of Coalesce.
	CoalesceDynamic bool

	dynCoalesce atomic.Int64
	// Sums over the data frames written (see Totals).
	waitSum    atomic.Int64
	busySum    atomic.Int64
	waitFrames atomic.Int64

	// timers are the writers' linger and coalescing timers, reused: a
	// fan-out to many idle sockets starts as many writers, and a fresh
	// timer each was half of what the frontend allocated.
	timers sync.Pool

	batchPool sync.Pool
}

func (e *Engine) maxBytes() int {
	if e.MaxBytes > 0 {
		return e.MaxBytes
	}
	return DefaultMaxBytes
}

func (e *Engine) maxMessages() int {
	if e.MaxMessages > 0 {
		return e.MaxMessages
	}
	return DefaultMaxMessages
}

// timer returns a stopped-and-reset timer firing after d.
func (e *Engine) timer(d time.Duration) *time.Timer {
	if t, ok := e.timers.Get().(*time.Timer); ok {
		t.Reset(d)
		return t
	}
	return time.NewTimer(d)
}

// putTimer stops t and keeps it for reuse. Since Go 1.23 a stopped timer
// never delivers a stale tick, so the next user needs no drain.
func (e *Engine) putTimer(t *time.Timer) {
	t.Stop()
	e.timers.Put(t)
}

// SetCoalesce sets the gap used while CoalesceDynamic is set, capped at
// Coalesce. It may be called at any time, from any goroutine.
func (e *Engine) SetCoalesce(d time.Duration) { e.dynCoalesce.Store(int64(min(d, e.Coalesce))) }

// CurrentCoalesce returns the gap in force.
func (e *Engine) CurrentCoalesce() time.Duration {
	if e.CoalesceDynamic {
		return time.Duration(e.dynCoalesce.Load())
	}
	return e.Coalesce
}

// WriterTotals are sums over every data frame written so far.
type WriterTotals struct {
	// Frames is the number of data frames.
	Frames int64
	// Wait is how long the oldest packet of each frame waited between
	// being queued (or the end of the coalescing gap it was held for)
	// and the start of its write: the delay the process adds because
	// its writers do not get to run at once. About 0 while it keeps up;
	// it grows with its run queue, a starved CPU or a blocked write.
	// Deliberate coalescing waits are not part of it.
	Wait time.Duration
	// Busy is the time spent joining and writing the frames (wall
	// clock): what the frames cost the process.
	Busy time.Duration
}

// Totals returns the writers' totals so far.
func (e *Engine) Totals() WriterTotals {
	// Frames first: a frame counted in the sums but not yet in Frames
	// only errs towards a higher mean.
	f := e.waitFrames.Load()
	return WriterTotals{Frames: f, Wait: time.Duration(e.waitSum.Load()), Busy: time.Duration(e.busySum.Load())}
}

// frameDone counts one frame whose oldest packet was due at readyAt,
// whose write started at start and ended at end.
func (e *Engine) frameDone(readyAt, start, end int64) {
	if w := start - readyAt; w > 0 {
		e.waitSum.Add(w)
	}
	e.busySum.Add(end - start)
	e.waitFrames.Add(1)
}

func (e *Engine) coalesceBytes() int {
	if e.CoalesceBytes > 0 {
		return e.CoalesceBytes
	}
	return 16 << 10
}

func (e *Engine) writeTimeout() time.Duration {
	if e.WriteTimeout > 0 {
		return e.WriteTimeout
	}
	return DefaultWriteTimeout
}

func (e *Engine) messageType() websocket.MessageType {
	if e.MessageType != 0 {
		return e.MessageType
	}
	return websocket.MessageText
}

// Owner is told when its queue gives up. Both methods are called at most
// once per queue in total, outside any lock, and must not block.
type Owner interface {
	// QueueOverflow reports that a packet would have exceeded a bound
	// (reason OverflowBytes or OverflowMessages). The queue is closed and
	// its content dropped; the owner closes the connection.
	QueueOverflow(reason string)
	// QueueWriteError reports a failed write (including a write deadline).
	// The queue is closed; the owner closes the connection.
	QueueWriteError(err error)
}

// Queue is one connection's outbound queue. Enqueue never blocks: it
// appends and, when no writer is running, starts one. The writer takes
// everything queued and writes it as one frame (via Engine.Batch), then
// looks again, and exits when the queue is empty, so an idle connection
// holds no goroutine. Only the writer writes data frames to the socket.
type Queue struct {
	eng   *Engine
	ws    *websocket.Conn
	lend  Lender
	nc    net.Conn
	owner Owner

	mu      sync.Mutex
	pkts    [][]byte
	bytes   int
	ping    []byte
	hasPing bool
	running bool
	closed  bool
	after   func()
	// lingering is set while the writer waits for more packets; wake
	// tells it some arrived.
	lingering bool
	// holding is set while the writer waits out Engine.Coalesce; wake
	// ends it early when the queue reaches Engine.CoalesceBytes, gets an
	// urgent packet, or closes.
	holding bool
	// urgent is set while the queue holds a packet queued with Enqueue:
	// the writer does not wait to coalesce.
	urgent bool
	// wake is the parked writer's: taken from wakePool when it first
	// parks, given back when it exits.
	wake chan struct{}
	// deadline is the write deadline set on the socket (writer only).
	deadline time.Time
	// lastFrame is when (Now) the writer last wrote a data frame, 0
	// for none since its last coalescing wait (writer only).
	lastFrame int64
	// readyAt is when (Now) the oldest queued packet became due: when it
	// was queued, or the end of the gap it is held for.
	readyAt int64
}

// epoch is the origin of Now.
var epoch = time.Now()

// Now is the engine's clock, in monotonic nanoseconds since the process
// started. A fan-out reads it once and passes it to EnqueueCoalescedAt
// for every subscriber.
func Now() int64 { return int64(time.Since(epoch)) }

// NewQueue returns a queue writing to ws, with deadlines set on nc (the
// connection under ws, as returned by Accept).
func NewQueue(eng *Engine, ws *websocket.Conn, nc net.Conn, owner Owner) *Queue {
	q := &Queue{}
	q.Init(eng, ws, nc, owner)
	return q
}

// Init prepares a zero Queue embedded in a larger struct (saving an
// allocation per connection).
func (q *Queue) Init(eng *Engine, ws *websocket.Conn, nc net.Conn, owner Owner) {
	q.eng, q.ws, q.nc, q.owner = eng, ws, nc, owner
}

// Lender lends a queue's writer the connection's websocket.Conn for one
// run, for an owner that drops the Conn while its connection is idle
// (see Detach and Raw.Reattach). A queue without one writes to the Conn
// it was given.
type Lender interface {
	// AcquireConn returns the Conn to write to until ReleaseConn.
	AcquireConn() (*websocket.Conn, error)
	// ReleaseConn ends the run's use; data reports whether it wrote any
	// data frame (not only a ping).
	ReleaseConn(data bool)
}

// SetLender makes the writer borrow its Conn from l; call it before
// anything is queued.
func (q *Queue) SetLender(l Lender) { q.lend = l }

// Enqueue queues one packet to be written promptly. p must not be
// modified afterwards; the same slice may be queued on many connections.
// It returns false when the queue is closed or overflowed (then
// Owner.QueueOverflow has been called).
func (q *Queue) Enqueue(p []byte) bool { return q.enqueue(p, true, 0) }

// EnqueueCoalesced is Enqueue for a packet that may wait up to the gap in
// force to share a frame with the ones after it: a delivery of a busy
// fan-out, not a reply.
func (q *Queue) EnqueueCoalesced(p []byte) bool { return q.enqueue(p, false, 0) }

// EnqueueCoalescedAt is EnqueueCoalesced for a packet that arrived at now
// (from Now), so that a fan-out reads the clock once for all its
// subscribers.
func (q *Queue) EnqueueCoalescedAt(p []byte, now int64) bool { return q.enqueue(p, false, now) }

func (q *Queue) enqueue(p []byte, urgent bool, now int64) bool {
	q.mu.Lock()
	if q.closed || q.after != nil {
		q.mu.Unlock()
		return false
	}
	reason := ""
	switch {
	case len(q.pkts)+1 > q.eng.maxMessages():
		reason = OverflowMessages
	case q.bytes+len(p) > q.eng.maxBytes():
		reason = OverflowBytes
	}
	if reason != "" {
		q.closeLocked()
		q.mu.Unlock()
		q.owner.QueueOverflow(reason)
		return false
	}
	if len(q.pkts) == 0 {
		if now == 0 {
			now = Now()
		}
		q.readyAt = now
	}
	q.pkts = append(q.pkts, p)
	q.bytes += len(p)
	if urgent {
		q.urgent = true
	}
	if q.holding && (urgent || q.bytes >= q.eng.coalesceBytes()) {
		q.endHoldLocked()
	}
	start := q.startLocked()
	q.mu.Unlock()
	if start {
		q.eng.WG.Go(q.run)
	}
	return true
}

// Ping asks the writer to send frame as a frame of its own, ahead of the
// queued packets. Pings do not count against the bounds and several pending
// pings collapse into one.
func (q *Queue) Ping(frame []byte) {
	q.mu.Lock()
	if q.closed || q.after != nil {
		q.mu.Unlock()
		return
	}
	q.ping, q.hasPing = frame, true
	start := q.startLocked()
	q.mu.Unlock()
	if start {
		q.eng.WG.Go(q.run)
	}
}

// Writing reports whether a writer runs or is about to (started and not
// yet exited).
func (q *Queue) Writing() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.running
}

// Len returns the number of packets and bytes queued.
func (q *Queue) Len() (packets, bytes int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.pkts), q.bytes
}

// Close drops everything queued and refuses further packets. A write in
// progress finishes (bounded by the write timeout).
func (q *Queue) Close() {
	q.mu.Lock()
	q.closeLocked()
	q.mu.Unlock()
}

// CloseAfterFlush refuses further packets and calls fn, on the writer's
// goroutine or a new one owned by the Engine's WaitGroup, once everything
// already queued has been written (or the queue failed). It is for closing
// a connection after a final message. Only the first call has an effect.
func (q *Queue) CloseAfterFlush(fn func()) {
	q.mu.Lock()
	if q.after != nil {
		q.mu.Unlock()
		return
	}
	q.after = fn
	if q.running {
		q.wakeLocked()
		q.endHoldLocked()
		q.mu.Unlock()
		return
	}
	q.running = true
	q.mu.Unlock()
	q.eng.WG.Go(q.run)
}

// wakeLocked ends a lingering writer's wait.
func (q *Queue) wakeLocked() { q.unparkLocked(&q.lingering) }

// unparkLocked wakes a writer parked with flag set.
func (q *Queue) unparkLocked(flag *bool) {
	if *flag {
		*flag = false
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
}

// park is the writer's wait, for more packets (flag lingering) or out a
// coalescing gap (flag holding): called with q.mu held, it releases it
// until d passes or wakeLocked / endHoldLocked wakes it, and returns with
// q.mu held again, reporting whether it was woken. t is the writer's
// reused timer.
func (q *Queue) park(flag *bool, d time.Duration, t **time.Timer) (woken bool) {
	if q.wake == nil {
		q.wake = wakePool.Get().(chan struct{})
	}
	*flag = true
	wake := q.wake
	q.mu.Unlock()
	if *t == nil {
		*t = q.eng.timer(d)
	} else {
		(*t).Reset(d)
	}
	select {
	case <-wake:
		(*t).Stop()
		woken = true
	case <-(*t).C:
	}
	q.mu.Lock()
	*flag = false
	// Drain a wake that raced with the timer.
	select {
	case <-wake:
	default:
	}
	return woken
}

// wakePool keeps the wake channels of writers that exited: an idle
// connection holds none. A channel goes back empty, since park drains
// every wake before it returns and the writer exits only after that.
var wakePool = sync.Pool{New: func() any { return make(chan struct{}, 1) }}

// releaseWakeLocked gives the exiting writer's wake channel back.
func (q *Queue) releaseWakeLocked() {
	if q.wake != nil {
		wakePool.Put(q.wake)
		q.wake = nil
	}
}

// endHoldLocked ends a coalescing writer's wait.
func (q *Queue) endHoldLocked() { q.unparkLocked(&q.holding) }

func (q *Queue) closeLocked() {
	q.wakeLocked()
	q.endHoldLocked()
	q.closed = true
	clear(q.pkts)
	q.pkts = nil
	q.bytes = 0
	q.urgent = false
	q.hasPing = false
}

func (q *Queue) startLocked() bool {
	if q.running {
		q.wakeLocked()
		return false
	}
	q.running = true
	return true
}

// run is the writer. It owns the socket's data frames while running.
func (q *Queue) run() {
	var spare [][]byte
	var linger *time.Timer
	ws := q.ws
	lent, data := false, false
	defer func() {
		if linger != nil {
			q.eng.putTimer(linger)
		}
		if lent {
			q.lend.ReleaseConn(data)
		}
	}()
	wrote := false
	for {
		q.mu.Lock()
		if !q.closed && q.after == nil && len(q.pkts) == 0 && !q.hasPing && q.eng.Linger > 0 {
			// Wait a little for more before giving the goroutine up.
			if q.park(&q.lingering, q.eng.Linger, &linger) {
				q.mu.Unlock()
				continue
			}
		}
		if q.closed || (len(q.pkts) == 0 && !q.hasPing) {
			if wrote {
				// A stale deadline would fail the close frame or the next
				// writer's first write. Cleared before running is
				// released, so it never clears the next writer's.
				q.nc.SetWriteDeadline(time.Time{})
				q.deadline = time.Time{}
			}
			q.running = false
			q.releaseWakeLocked()
			after := q.after
			if len(q.pkts) == 0 {
				q.pkts = nil
			}
			if after != nil {
				q.closed = true
			}
			q.mu.Unlock()
			if after != nil {
				after()
			}
			return
		}
		if gap := q.eng.CurrentCoalesce(); gap > 0 && !q.closed && q.after == nil && len(q.pkts) > 0 && !q.urgent &&
			q.lastFrame != 0 && q.bytes < q.eng.coalesceBytes() {
			now := Now()
			if end := q.lastFrame + int64(gap); end > now {
				q.readyAt = max(q.readyAt, end)
				q.park(&q.holding, time.Duration(end-now), &linger)
				q.lastFrame = 0
				q.mu.Unlock()
				continue
			}
		}
		var ping []byte
		hasPing := q.hasPing
		if hasPing {
			ping, q.hasPing = q.ping, false
		}
		pkts := q.pkts
		readyAt := q.readyAt
		q.pkts, q.bytes, q.urgent = spare[:0], 0, false
		q.mu.Unlock()

		var start int64
		if len(pkts) > 0 {
			start = Now()
		}
		wrote = true
		var err error
		if q.lend != nil && !lent {
			ws, err = q.lend.AcquireConn()
			lent = err == nil
		}
		if err == nil {
			err = q.write(ws, hasPing, ping, pkts)
			data = data || len(pkts) > 0
		}
		if len(pkts) > 0 {
			end := Now()
			q.eng.frameDone(readyAt, start, end)
			if q.eng.Coalesce > 0 || q.eng.CoalesceDynamic {
				q.lastFrame = end
			}
		}
		clear(pkts)
		spare = pkts
		if err != nil {
			q.mu.Lock()
			q.closeLocked()
			after := q.after
			q.running = false
			q.releaseWakeLocked()
			q.mu.Unlock()
			q.owner.QueueWriteError(err)
			if after != nil {
				after()
			}
			return
		}
	}
}

// corker is implemented by *Raw: writes between Cork and Uncork leave in
// one syscall.
type corker interface {
	Cork()
	Uncork() error
}

func (q *Queue) write(ws *websocket.Conn, hasPing bool, ping []byte, pkts [][]byte) error {
	if c, ok := q.nc.(corker); ok {
		c.Cork()
		err := q.writeFrames(ws, hasPing, ping, pkts)
		if uerr := c.Uncork(); err == nil {
			err = uerr
		}
		return err
	}
	return q.writeFrames(ws, hasPing, ping, pkts)
}

func (q *Queue) writeFrames(ws *websocket.Conn, hasPing bool, ping []byte, pkts [][]byte) error {
	ctx := context.Background()
	typ := q.eng.messageType()
	// Setting a deadline re-arms a runtime timer; on a busy socket that
	// costs as much as the frame. Refresh it only once half of it has
	// passed: every write still has at least half the timeout.
	deadline := func() {
		now := time.Now()
		if q.deadline.Sub(now) > q.eng.writeTimeout()/2 {
			return
		}
		q.deadline = now.Add(q.eng.writeTimeout())
		q.nc.SetWriteDeadline(q.deadline)
	}
	if hasPing {
		deadline()
		if err := ws.Write(ctx, websocket.MessageText, ping); err != nil {
			return err
		}
	}
	switch {
	case len(pkts) == 0:
		return nil
	case len(pkts) == 1 || q.eng.Batch == nil:
		for _, p := range pkts {
			deadline()
			if err := ws.Write(ctx, typ, p); err != nil {
				return err
			}
			q.frame(1, len(p))
		}
		return nil
	}
	bp, _ := q.eng.batchPool.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	buf := q.eng.Batch((*bp)[:0], pkts)
	deadline()
	err := ws.Write(ctx, typ, buf)
	if err == nil {
		q.frame(len(pkts), len(buf))
	}
	if cap(buf) <= maxPooledBatch {
		*bp = buf[:0]
		q.eng.batchPool.Put(bp)
	}
	return err
}

func (q *Queue) frame(packets, bytes int) {
	if q.eng.OnFrame != nil {
		q.eng.OnFrame(packets, bytes)
	}
}
