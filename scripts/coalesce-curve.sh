#!/usr/bin/env bash
# coalesce-curve.sh measures latency against load for the frontend's write
# policies, in one run. One server per policy (a standalone scc-frontend,
# or with "cluster" a local cluster of 1 state, 1 broker and 2 frontends)
# runs throughout; at each rate scc-bench loads each server in turn, so the
# policies meet the same machine at nearly the same time. Scenarios: 1000
# subscribers on 100 channels and on one channel (broadcast), 10
# publishers, 64-byte payloads, at delivered rates RATES (default 10k,
# 17.8k, 31.6k, 56k, 100k, 178k, 316k and 562k a second). Needs make build
# (or BIN). Prints one table row per run, with the load average before it.
#
#   scripts/coalesce-curve.sh                 # standalone frontend
#   scripts/coalesce-curve.sh cluster         # local cluster
#
# POLICIES lists name=ENV pairs separated by spaces, ENV a comma list of
# VAR=value set on the server (BIN=dir runs that policy's servers from
# another build, to compare builds in one run) (default: "adaptive= batching=SCC_WRITE_COALESCE=0":
# the default policy and the batching-only baseline). SERVER_PIN and
# BENCH_PIN prefix the servers and the bench, for example
# SERVER_PIN="taskset -c 1" BENCH_PIN="taskset -c 0". OUT keeps the JSON
# results (default a temporary directory). For a standalone frontend the
# "gap in force" column is how long a coalescing gap was in force during
# the run (scc_frontend_write_coalesce_engaged_seconds_total): 0 means
# that policy held no frame back.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-frontend}
BIN=${BIN:-bin}
SERVER_PIN=${SERVER_PIN:-}
BENCH_PIN=${BENCH_PIN:-}
POLICIES=${POLICIES:-"adaptive= batching=SCC_WRITE_COALESCE=0"}
RATES=${RATES:-"10000 17783 31623 56234 100000 177828 316228 562341"}
SCENARIOS=${SCENARIOS:-"channels100 broadcast"}
BROKERS=${BROKERS:-1} # brokers of the local cluster
tmp=$(mktemp -d)
OUT=${OUT:-$tmp}
mkdir -p "$OUT"
# The benchmark publishers exceed the per-socket and per-channel rates and
# the channel delivery budget.
export SCC_INBOUND_RATE=0 SCC_INBOUND_BYTE_RATE=0 SCC_CHANNEL_PUBLISH_RATE=0 SCC_CHANNEL_DELIVERY_RATE=0

declare -A urls pids admins
spids=()
stop() {
	for p in "${spids[@]}"; do kill -INT "$p" 2>/dev/null || true; done
	for p in "${spids[@]}"; do wait "$p" 2>/dev/null || true; done
	spids=()
}
trap 'stop; rm -rf "$tmp"' EXIT

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

port=18000
# start NAME ENV: starts a server with ENV (comma list).
start() {
	local name=$1 envs=() all=() bin=$BIN
	[ -n "$2" ] && IFS=, read -ra all <<<"$2"
	for e in "${all[@]}"; do
		if [[ $e == BIN=* ]]; then bin=${e#BIN=}; else envs+=("$e"); fi
	done
	local out="$tmp/$name.out"
	if [ "$MODE" = cluster ]; then
		env "${envs[@]}" $SERVER_PIN "$bin/scc-local" -base-port 0 -control-port 0 -brokers "$BROKERS" -frontends 2 -color never >"$out" 2>"$tmp/$name.err" &
		spids+=($!)
		for _ in $(seq 1 600); do grep -q "Ctrl-C stops" "$out" && break; sleep 0.1; done
		urls[$name]=$(grep -oE "ws://[^ ]*/socketcluster/" "$out" | sort -u | paste -sd,)
		local ctl
		ctl=$(grep -oE "control: +http://[^ /]+" "$out" | awk '{print $2}')
		pids[$name]=$(curl -s "$ctl/procs" | grep -oE '"pid": *[0-9]+' | grep -oE '[0-9]+' | paste -sd,)
	else
		while ! port_free "$port"; do port=$((port + 1)); done
		local admin=$((port + 1))
		while ! port_free "$admin"; do admin=$((admin + 1)); done
		env "${envs[@]}" SOCKETCLUSTER_PORT=$port SCC_ADMIN_PORT=$admin SCC_ADMIN_HOST=127.0.0.1 SCC_FRONTEND_HOST=127.0.0.1 $SERVER_PIN "$bin/scc-frontend" >"$out" 2>&1 &
		spids+=($!)
		for _ in $(seq 1 600); do port_free "$port" || break; sleep 0.1; done
		urls[$name]="ws://127.0.0.1:$port/socketcluster/"
		admins[$name]="http://127.0.0.1:$admin"
		pids[$name]=${spids[-1]}
		port=$((admin + 1))
	fi
}

for p in $POLICIES; do start "${p%%=*}" "${p#*=}"; done

# engaged NAME: the seconds a coalescing gap was in force on the
# standalone server NAME so far ("" in a cluster).
engaged() {
	[ -n "${admins[$1]:-}" ] || return 0
	curl -s "${admins[$1]}/metrics" | awk '/^scc_frontend_write_coalesce_engaged_seconds_total /{print $2}'
}

echo "| scenario | target deliveries/s | policy | delivered/s | p50 ms | p99 ms | server CPU | machine CPU | gap in force s | load avg |"
echo "|---|---:|---|---:|---:|---:|---:|---:|---:|---|"
for sc in $SCENARIOS; do
	subs_per_channel=10 channels=100
	[ "$sc" = broadcast ] && subs_per_channel=1000 channels=1
	for r in $RATES; do
		rate=$(awk -v r="$r" -v k="$subs_per_channel" 'BEGIN{printf "%.4g", r/k}')
		for p in $POLICIES; do
			name=${p%%=*}
			load=$(cut -d' ' -f1 /proc/loadavg)
			json="$OUT/$MODE-$sc-$r-$name.json"
			e0=$(engaged "$name")
			$BENCH_PIN "$BIN/scc-bench" fanout -quiet -urls "${urls[$name]}" -server-pids "${pids[$name]}" -json "$json" \
				-subs 1000 -channels "$channels" -k 1 -pubs 10 -size 64 -rate "$rate" \
				-warmup 1500ms -duration 3s -drain 2s >"$tmp/bench.out" 2>&1 || true
			e1=$(engaged "$name")
			held=-
			[ -n "$e0" ] && [ -n "$e1" ] && held=$(awk -v a="$e0" -v b="$e1" 'BEGIN{printf "%.2f", b-a}')
			if [ -s "$json" ]; then
				jq -r --arg s "$sc" --arg r "$r" --arg p "$name" --arg l "$load" --arg h "$held" \
					'"| \($s) | \($r) | \($p) | \(.delivered_per_s|round) | \(.latency.p50_ms*100|round/100) | \(.latency.p99_ms*100|round/100) | \((.steps[0].server_cpu // -1)*100|round/100) | \((.steps[0].machine_cpu // -1)*100|round/100) | \($h) | \($l) |"' "$json"
			else
				echo "| $sc | $r | $name | no result: $(tail -n 1 "$tmp/bench.out") | | | | | $held | $load |"
			fi
		done
	done
done
