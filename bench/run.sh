#!/usr/bin/env bash
# make bench: build, start a local server, run the standard scenarios and
# write bench/results/ (JSON and HTML per scenario, summary.md).
#
# The server is a local cluster from bin/scc-local when it builds and comes
# up, otherwise a standalone bin/scc-frontend. With taskset and at least two
# CPUs the server is pinned to CPU 1 and the bench to CPU 0. Every step is
# bounded: the whole target finishes within 10 minutes.
set -euo pipefail

cd "$(dirname "$0")/.."
GO=${GO:-go}
BIN=${BIN:-bin}
OUT=${BENCH_RESULTS:-bench/results}
SERVER=${BENCH_SERVER:-auto}      # auto, cluster or frontend
SCENARIO_TIMEOUT=${BENCH_SCENARIO_TIMEOUT:-150}
mkdir -p "$BIN" "$OUT"
LOGDIR=$(mktemp -d)

say() { printf '==> %s\n' "$*" >&2; }

say "building scc-bench and scc-frontend"
$GO build -o "$BIN/" ./cmd/scc-bench ./cmd/scc-frontend
have_cluster=no
if [ "$SERVER" != frontend ]; then
	if $GO build -o "$BIN/" ./cmd/scc-local ./cmd/scc-state ./cmd/scc-broker >"$LOGDIR/build-cluster.log" 2>&1; then
		have_cluster=yes
	else
		say "the cluster binaries do not build yet ($(tail -n 1 "$LOGDIR/build-cluster.log")); using a standalone frontend"
	fi
fi

server_pin=() bench_pin=() pinning="not pinned (taskset missing or fewer than 2 CPUs)"
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
	server_pin=(taskset -c 1) bench_pin=(taskset -c 0)
	pinning="server pinned to CPU 1 (taskset -c 1), bench to CPU 0 (taskset -c 0)"
fi
say "$pinning"

# The frontend closes a socket that sends more than SCC_INBOUND_RATE
# messages per second (default 1000): the ten publishers of the standard
# scenarios exceed it above 10k msg/s, so the benchmark server runs without it.
export SCC_INBOUND_RATE=${SCC_INBOUND_RATE:-0}
# Likewise the per-socket byte rate (default 2 MiB/s).
export SCC_INBOUND_BYTE_RATE=${SCC_INBOUND_BYTE_RATE:-0}
# And the per-channel publish rate (default 1000/s per channel per
# frontend): the broadcast scenario publishes far more to its one channel.
export SCC_CHANNEL_PUBLISH_RATE=${SCC_CHANNEL_PUBLISH_RATE:-0}
# And the per-channel delivery budget (10,000 deliveries/s per channel):
# the broadcast scenario's one channel has thousands of readers.
export SCC_CHANNEL_DELIVERY_RATE=${SCC_CHANNEL_DELIVERY_RATE:-0}

server_pid=""
cleanup() {
	if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
		kill -TERM "$server_pid" 2>/dev/null || true
		for _ in $(seq 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.2; done
		kill -KILL "$server_pid" 2>/dev/null || true
		wait "$server_pid" 2>/dev/null || true
	fi
	rm -rf "$LOGDIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

urls="" mode=""
if [ "$have_cluster" = yes ]; then
	say "starting a local cluster: bin/scc-local -brokers 2 -frontends 2"
	"${server_pin[@]}" "$BIN/scc-local" -brokers 2 -frontends 2 -base-port 0 -control-port 0 -color never \
		-ready-timeout 45s >"$LOGDIR/server.log" 2>&1 &
	server_pid=$!
	for _ in $(seq 250); do
		if grep -q 'Ctrl-C stops everything' "$LOGDIR/server.log"; then break; fi
		kill -0 "$server_pid" 2>/dev/null || break
		sleep 0.2
	done
	urls=$(grep -oE 'ws://[^ ]+/socketcluster/' "$LOGDIR/server.log" | awk '!seen[$0]++' | paste -sd, - || true)
	if grep -q 'Ctrl-C stops everything' "$LOGDIR/server.log" && [ -n "$urls" ]; then
		mode="local cluster (scc-local: 1 state, 2 brokers, 2 frontends)"
	else
		say "the local cluster did not come up; its last output:"
		tail -n 15 "$LOGDIR/server.log" >&2 || true
		cleanup_pid=$server_pid; server_pid=""
		kill -TERM "$cleanup_pid" 2>/dev/null || true; wait "$cleanup_pid" 2>/dev/null || true
		urls=""
	fi
fi
if [ -z "$urls" ]; then
	port=18000
	while ! port_free "$port"; do port=$((port + 1)); done
	say "starting a standalone frontend on 127.0.0.1:$port"
	SOCKETCLUSTER_PORT=$port SCC_FRONTEND_HOST=127.0.0.1 "${server_pin[@]}" "$BIN/scc-frontend" >"$LOGDIR/server.log" 2>&1 &
	server_pid=$!
	for _ in $(seq 50); do
		port_free "$port" || break
		kill -0 "$server_pid" 2>/dev/null || { tail -n 15 "$LOGDIR/server.log" >&2; exit 1; }
		sleep 0.2
	done
	urls="ws://127.0.0.1:$port/socketcluster/"
	mode="standalone frontend (scc-frontend)"
fi
say "server: $mode at $urls"
# The server's processes, so that scc-bench reports their CPU use per step.
server_pids=$(printf '%s\n' "$server_pid" $(pgrep -P "$server_pid" 2>/dev/null || true) | paste -sd, -)

status=0
run_scenario() { # name, then scc-bench arguments
	local name=$1; shift
	say "scenario $name: scc-bench $*"
	local rc=0
	timeout --kill-after=10 "$SCENARIO_TIMEOUT" "${bench_pin[@]}" "$BIN/scc-bench" "$@" -name "$name" -urls "$urls" -server-pids "$server_pids" \
		-json "$OUT/$name.json" -report "$OUT/$name.html" || rc=$?
	case $rc in
	0) ;;
	2) say "scenario $name failed its checks (see $OUT/$name.json)"; status=1 ;;
	3) say "scenario $name: no rate met the latency bound on this machine (deliveries were all correct)" ;;
	124|137) say "scenario $name timed out after ${SCENARIO_TIMEOUT}s"; status=1 ;;
	*) say "scenario $name could not run (exit $rc)"; status=1 ;;
	esac
}

rm -f "$OUT"/*.json "$OUT"/*.html
# Fan-out: 1000 subscribers on 100 channels (10 per channel), 10 publishers,
# 64-byte payloads: each publish is delivered 10 times.
run_scenario fanout sweep -subs 1000 -channels 100 -k 1 -pubs 10 -size 64 \
	-rate 1000 -sweep-factor 2 -sweep-steps 8 -sweep-refine 2 -p99-bound 50ms \
	-warmup 1s -duration 3s -drain 3s
# Broadcast: 1000 subscribers on one channel: each publish is delivered 1000 times.
run_scenario broadcast sweep -subs 1000 -channels 1 -k 1 -pubs 10 -size 64 \
	-rate 5 -sweep-factor 2 -sweep-steps 8 -sweep-refine 2 -p99-bound 50ms \
	-warmup 1s -duration 3s -drain 3s
# Idle connections: the connect rate and failures.
run_scenario conns conns -subs 2000 -duration 3s

shopt -s nullglob
results=("$OUT"/fanout.json "$OUT"/broadcast.json "$OUT"/conns.json)
existing=()
for f in "${results[@]}"; do [ -f "$f" ] && existing+=("$f"); done
if [ ${#existing[@]} -gt 0 ]; then
	commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
	title="# scc-bench results

$(date -u '+%Y-%m-%d %H:%M UTC'), commit $commit, $(nproc) CPUs ($(uname -sm)).
Server: $mode, SCC_INBOUND_RATE=$SCC_INBOUND_RATE. Load: scc-bench, $pinning.
Rates are the highest sweep step with p99 ≤ 50 ms and no loss, duplicate or reordering;
delivered msg/s counts every delivery to every subscriber."
	"$BIN/scc-bench" summary -title "$title" -o "$OUT/summary.md" "${existing[@]}"
	say "wrote $OUT/summary.md"
	cat "$OUT/summary.md"
fi
exit $status
