// Package chaos runs sccgo's fault scenarios against the real binaries
// (scc-state, scc-broker, scc-frontend from bin/) as separate OS processes
// on loopback, and a soak test with periodic broker churn.
//
// Every scenario starts its own cluster through internal/localcluster,
// drives sequence-checked traffic across at least two frontends
// (internal/clustertest.Traffic), injects one fault, prints one result line
// and writes chaos/results/<scenario>.json (plus the cluster's output in
// <scenario>.log). A scenario fails when a promise of the design's
// "Failures" table is broken.
//
// The scenarios are Go tests that skip unless SCC_CHAOS is set, so make
// test only compiles them:
//
//	make chaos        # every scenario (SCC_CHAOS=1)
//	make chaos-quick  # the fast ones, for CI
//	make soak         # SOAK_DURATION (default 10m) of load with broker churn
//
// Environment: SCC_BIN_DIR overrides the binaries' directory (default the
// module's bin/); SCC_CHAOS_RESULTS the results directory (default
// chaos/results). The partition scenario needs root for network namespaces
// and skips with a message without them.
//
// The test binary doubles as a load worker: started with SCC_CHAOS_WORKER
// set it runs RunWorker instead of the tests, so connection storms come from
// separate processes with their own file descriptor limits.
package chaos
