package bench

import "time"

// Result is the outcome of a run. For sweep, the top-level figures are
// those of the highest passing step (Sustainable), and Steps lists every
// step.
type Result struct {
	Name     string    `json:"name"`
	Scenario Scenario  `json:"scenario"`
	Config   Config    `json:"config"`
	Start    time.Time `json:"start"`
	// Elapsed is the whole run, connecting included, in seconds.
	Elapsed float64 `json:"elapsed_s"`
	Host    Host    `json:"host"`

	Connect ConnectResult `json:"connect"`

	// Rate is the target publish rate of the reported run or step.
	Rate float64 `json:"rate"`
	// Published counts publishes accepted by the client (all rounds of
	// the reported step); PublishErrors those it refused or the server
	// rejected.
	Published     int64 `json:"published"`
	PublishErrors int64 `json:"publish_errors"`
	// PublishedPerSec is the publish rate reached in the measured window.
	PublishedPerSec float64 `json:"published_per_s"`
	// Delivered counts deliveries received during the measured window;
	// DeliveredPerSec is that over the window's length: the throughput.
	Delivered       int64   `json:"delivered"`
	DeliveredPerSec float64 `json:"delivered_per_s"`
	// Latency is end-to-end, from the scheduled send time to receipt, of
	// messages scheduled in the measured window.
	Latency LatencySummary `json:"latency"`
	// Check is the delivery check over the whole run (warm-up included).
	Check CheckResult `json:"check"`
	// Disconnects counts connections that closed during the run, by close
	// code and reason in DisconnectReasons.
	Disconnects       int64            `json:"disconnects"`
	DisconnectReasons map[string]int64 `json:"disconnect_reasons,omitempty"`
	// Drops counts the subscriber connections cut by DropEvery (not in
	// Disconnects); Recovered and RecoveryFailed their resubscribes that
	// recovered what they missed, or were told they could not.
	Drops          int64 `json:"drops,omitempty"`
	Recovered      int64 `json:"recovered,omitempty"`
	RecoveryFailed int64 `json:"recovery_failed,omitempty"`
	// BenchCPU, ServerCPU and MachineCPU are the reported step's CPU use
	// by the bench, the server and every process, in cores (-1 when
	// unknown).
	BenchCPU   float64 `json:"bench_cpu"`
	ServerCPU  float64 `json:"server_cpu"`
	MachineCPU float64 `json:"machine_cpu"`

	// Series is one sample per second, across every step.
	Series []Sample `json:"series,omitempty"`
	// Steps are the sweep's steps in the order run.
	Steps []Step `json:"steps,omitempty"`
	// Sustainable is the sweep's highest passing step, if any passed.
	Sustainable *Step `json:"sustainable,omitempty"`
	// Pass is whether the run met its bounds: no loss, duplicate,
	// reordering or connect failure (and for sweep, one step passed).
	Pass bool `json:"pass"`
	// Correct is whether every step delivered exactly what was expected,
	// in order, with no connection failing: Pass without the latency
	// bound.
	Correct bool `json:"correct"`
	// Notes explain anything unusual (for example bench-side drops).
	Notes []string `json:"notes,omitempty"`
}

// Host describes where the load ran.
type Host struct {
	Hostname   string `json:"hostname"`
	NumCPU     int    `json:"num_cpu"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	Procs      int    `json:"procs"`
	// FDLimit is the open-file limit per process.
	FDLimit uint64 `json:"fd_limit"`
	// CPUAffinity lists the CPUs the bench may run on, if known.
	CPUAffinity string `json:"cpu_affinity,omitempty"`
	GoVersion   string `json:"go_version"`
}

// ConnectResult is the connection phase.
type ConnectResult struct {
	Attempted int `json:"attempted"`
	Connected int `json:"connected"`
	Failed    int `json:"failed"`
	// FirstError is the first connection error, if any.
	FirstError string `json:"first_error,omitempty"`
	// Seconds is the time to open every connection; PerSec the rate.
	Seconds float64 `json:"seconds"`
	PerSec  float64 `json:"per_s"`
	// Latency is the time per connection: dial, upgrade, handshake and
	// subscribes.
	Latency LatencySummary `json:"latency"`
}

// Step is one rate of a sweep (or the single round of a fixed-rate run).
type Step struct {
	Rate            float64        `json:"rate"`
	PublishedPerSec float64        `json:"published_per_s"`
	DeliveredPerSec float64        `json:"delivered_per_s"`
	Latency         LatencySummary `json:"latency"`
	Check           CheckResult    `json:"check"`
	Disconnects     int64          `json:"disconnects"`
	// DisconnectReasons counts the disconnects by close code and reason,
	// for example "4011 …" when the server's inbound rate limit closed a
	// publisher.
	DisconnectReasons map[string]int64 `json:"disconnect_reasons,omitempty"`
	// Drops, Recovered and RecoveryFailed: as in Result.
	Drops          int64 `json:"drops,omitempty"`
	Recovered      int64 `json:"recovered,omitempty"`
	RecoveryFailed int64 `json:"recovery_failed,omitempty"`
	// BenchCPU is the CPU the bench's processes used during the step, in
	// cores (1.0 = one core busy): near the cores it may use, the bench
	// rather than the server limits the figures.
	BenchCPU float64 `json:"bench_cpu"`
	// ServerCPU is the CPU the processes in Config.ServerPIDs used during
	// the step, in cores; -1 when unknown.
	ServerCPU float64 `json:"server_cpu"`
	// MachineCPU is the CPU every process on the machine used during the
	// step, in cores (-1 when unknown): beyond bench and server it shows
	// other load that makes the figures pessimistic.
	MachineCPU float64 `json:"machine_cpu"`
	Pass       bool    `json:"pass"`
	// Reason says why the step failed.
	Reason string `json:"reason,omitempty"`

	published, publishErrors, delivered int64
}

// Sample is one second of a run.
type Sample struct {
	// T is the end of the second, in seconds since the first round began.
	T float64 `json:"t"`
	// Step is the sweep step (0 for fixed-rate runs).
	Step int `json:"step"`
	// Phase is warmup, measure or drain.
	Phase string `json:"phase"`
	// Seconds is the sample's length: 1, or less for a round's last one.
	// Delivered and Published are counts over it.
	Seconds   float64 `json:"seconds"`
	Delivered int64   `json:"delivered"`
	Published int64   `json:"published"`
	Errors    int64   `json:"errors"`
	P50       float64 `json:"p50_ms"`
	P90       float64 `json:"p90_ms"`
	P99       float64 `json:"p99_ms"`
	Max       float64 `json:"max_ms"`
}

// Progress is what a live display shows.
type Progress struct {
	// Phase is connect, warmup, measure, drain or hold.
	Phase string
	// Step is the sweep step, from 1 (0 outside a sweep).
	Step int
	// Rate is the target publish rate of the round.
	Rate float64
	// Done and Total measure progress through the phase (connections, or
	// seconds).
	Done, Total float64
	// Connected and ConnectFailed count connections so far.
	Connected, ConnectFailed int
	// Delivered is the delivered rate of the last second, P99 its p99 in
	// milliseconds, Errors the publish errors and disconnects so far.
	Delivered float64
	P99       float64
	Errors    int64
}
