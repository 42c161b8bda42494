#!/usr/bin/env bash
# coalesce-curve.sh measures latency against load for the frontend's write
# policies, in one run: for each policy a fresh server (a standalone
# scc-frontend, or with "cluster" a local cluster of 1 state, 1 broker and
# 2 frontends) and two scc-bench sweeps, 1000 subscribers on 100 channels
# and on one channel (broadcast), 10 publishers, 64-byte payloads, at
# delivered rates 10k, 17.8k, 31.6k, 56k, 100k, 178k, 316k... a second
# (a factor 10^0.25 per step) until p99 exceeds BOUND (50ms), then REFINE
# (2) bisection steps. Needs make build (or BIN). Prints one table row per
# step.
#
#   scripts/coalesce-curve.sh                 # standalone frontend
#   scripts/coalesce-curve.sh cluster         # local cluster
#
# POLICIES lists name=ENV pairs separated by spaces, ENV a comma list of
# VAR=value set on the server (default: "adaptive= batching=SCC_WRITE_COALESCE=0":
# the default policy and the batching-only baseline). SERVER_PIN and
# BENCH_PIN prefix the server and the bench, for example
# SERVER_PIN="taskset -c 1" BENCH_PIN="taskset -c 0". OUT keeps the JSON
# results (default a temporary directory).
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-frontend}
BIN=${BIN:-bin}
SERVER_PIN=${SERVER_PIN:-}
BENCH_PIN=${BENCH_PIN:-}
POLICIES=${POLICIES:-"adaptive= batching=SCC_WRITE_COALESCE=0"}
BOUND=${BOUND:-50ms}   # the sweep's p99 bound; a large one (10s) runs every step
STEPS=${STEPS:-9}
REFINE=${REFINE:-2}
tmp=$(mktemp -d)
OUT=${OUT:-$tmp}
mkdir -p "$OUT"
# The benchmark publishers exceed the per-socket and per-channel rates.
export SCC_INBOUND_RATE=0 SCC_INBOUND_BYTE_RATE=0 SCC_CHANNEL_PUBLISH_RATE=0

server_pid=""
stop() {
	if [ -n "$server_pid" ]; then
		kill -INT "$server_pid" 2>/dev/null || true
		wait "$server_pid" 2>/dev/null || true
		server_pid=""
	fi
}
trap 'stop; rm -rf "$tmp"' EXIT

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# start ENV: starts a server with ENV (comma list), sets urls and pids.
start() {
	local envs=()
	[ -n "$1" ] && IFS=, read -ra envs <<<"$1"
	if [ "$MODE" = cluster ]; then
		env "${envs[@]}" $SERVER_PIN "$BIN/scc-local" -base-port 0 -control-port 0 -brokers 1 -frontends 2 -color never >"$tmp/out" 2>"$tmp/err" &
		server_pid=$!
		for _ in $(seq 1 600); do grep -q "Ctrl-C stops" "$tmp/out" && break; sleep 0.1; done
		urls=$(grep -oE "ws://[^ ]*/socketcluster/" "$tmp/out" | sort -u | paste -sd,)
		local ctl
		ctl=$(grep -oE "control: +http://[^ /]+" "$tmp/out" | awk '{print $2}')
		pids=$(curl -s "$ctl/procs" | grep -oE '"pid": *[0-9]+' | grep -oE '[0-9]+' | paste -sd,)
	else
		local port=18000
		while ! port_free "$port"; do port=$((port + 1)); done
		env "${envs[@]}" SOCKETCLUSTER_PORT=$port SCC_FRONTEND_HOST=127.0.0.1 $SERVER_PIN "$BIN/scc-frontend" >"$tmp/out" 2>&1 &
		server_pid=$!
		for _ in $(seq 1 100); do port_free "$port" || break; sleep 0.1; done
		urls="ws://127.0.0.1:$port/socketcluster/"
		pids=$server_pid
	fi
}

sweep() { # name, rate of the first step, channels
	$BENCH_PIN "$BIN/scc-bench" sweep -quiet -urls "$urls" -server-pids "$pids" -json "$OUT/$1.json" \
		-subs 1000 -channels "$3" -k 1 -pubs 10 -size 64 -rate "$2" \
		-sweep-factor 1.7783 -sweep-steps "$STEPS" -sweep-refine "$REFINE" -p99-bound "$BOUND" \
		-warmup 1s -duration 3s -drain 2s >"$tmp/bench.out" 2>&1 || true
}

echo "| policy | scenario | delivered/s | p50 ms | p99 ms | pass | server CPU | machine CPU | load avg at start |"
echo "|---|---|---:|---:|---:|---|---:|---:|---|"
for p in $POLICIES; do
	name=${p%%=*} envs=${p#*=}
	for sc in "channels100 1000 100" "broadcast 10 1"; do
		set -- $sc
		start "$envs"
		load=$(cut -d' ' -f1-3 /proc/loadavg)
		sweep "$MODE-$name-$1" "$2" "$3"
		stop
		if [ -f "$OUT/$MODE-$name-$1.json" ]; then
			jq -r --arg p "$name" --arg s "$1" --arg l "$load" \
				'.steps[] | "| \($p) | \($s) | \(.delivered_per_s|round) | \(.latency.p50_ms*100|round/100) | \(.latency.p99_ms*100|round/100) | \(.pass) | \(.server_cpu*100|round/100) | \(.machine_cpu*100|round/100) | \($l) |"' \
				"$OUT/$MODE-$name-$1.json"
		else
			echo "| $name | $1 | no result: $(tail -n 1 "$tmp/bench.out") | | | | | | $load |"
		fi
	done
done
