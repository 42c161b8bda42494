// Package bench is sccgo's load generator and delivery checker. It speaks
// only the SocketCluster client protocol (through package client), so it
// measures any SocketCluster server: an sccgo cluster, a standalone
// frontend, or SocketCluster/SCC itself.
//
// A run has one Scenario: fanout (N subscribers over C channels, P
// publishers at a total rate), broadcast (every subscriber on one channel),
// conns (open and hold idle subscribed connections) or sweep (step the rate
// up until the p99 latency bound is exceeded or a message is lost). Every
// payload carries its publisher id, a sequence number per publisher and
// channel, and its send time (see EncodePayload), so each delivery is both
// a latency sample and a correctness check.
//
// The Checker counts expected against received deliveries, lost,
// duplicated and out-of-order messages per publisher and channel. It is
// usable on its own by other test suites (resharding, failure injection):
//
//	ck := bench.NewChecker()
//	ck.Observe(msg.Channel, msg.Data, time.Now())  // for each delivery
//	ck.Expect(pubID, channel, seq)                 // for each publish that should arrive
//	res := ck.Result()                             // res.Lost, res.Duplicated, res.OutOfOrder
//
// Run drives a whole scenario against given URLs and returns a Result.
// With Config.Procs > 1 the load is spread over worker processes (the
// running executable re-executed with Config.WorkerCommand); they exchange
// JSON lines with the coordinator over stdin and stdout (see RunWorker) and
// their histograms are merged exactly.
//
// Latency is measured from the payload's send time, which is the time the
// message was scheduled to be sent (not when the client got round to it),
// so a load generator that falls behind shows up as latency instead of
// hiding it (no coordinated omission). Publishers and subscribers must
// share a clock: one machine, or machines with synchronised clocks.
//
// Goroutines: Run owns every goroutine it starts (one per subscription
// reader, one per publisher, a ticker, and per worker process a reader)
// and waits for all of them before it returns.
package bench
