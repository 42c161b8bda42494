#!/usr/bin/env bash
# tls-cost.sh measures what TLS costs, in one run: a local cluster (1 state,
# 1 broker, 2 frontends, free ports) with plain links and ws:// clients,
# TLS links, wss:// clients, and both, each under the same scc-bench
# fanout. Needs make build. Extra arguments replace the bench load.
#
#   scripts/tls-cost.sh                      # 20k deliveries/s
#   scripts/tls-cost.sh -rate 5000 ...       # another load
#
# SERVER_PIN and BENCH_PIN prefix the cluster and the bench, for example
# SERVER_PIN="taskset -c 1" BENCH_PIN="taskset -c 0".
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin}
LOAD=("$@")
SERVER_PIN=${SERVER_PIN:-}
BENCH_PIN=${BENCH_PIN:-}
[ ${#LOAD[@]} -eq 0 ] && LOAD=(-subs 200 -channels 20 -pubs 10 -rate 2000 -size 256 -warmup 2s -duration 8s -drain 3s)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

one() {
	local name=$1; shift
	$SERVER_PIN "$BIN/scc-local" -base-port 0 -control-port 0 -brokers 1 -frontends 2 "$@" >"$tmp/out" 2>"$tmp/err" &
	local lpid=$!
	for _ in $(seq 1 600); do grep -q "Ctrl-C stops" "$tmp/out" && break; sleep 0.1; done
	local urls ca ctl pids extra=()
	urls=$(grep -oE "wss?://[^ ]*/socketcluster/" "$tmp/out" | sort -u | paste -sd,)
	ca=$(grep -oE "TLS CA: +[^ ]+" "$tmp/out" | awk '{print $3}' || true)
	ctl=$(grep -oE "control: +http://[^ /]+" "$tmp/out" | awk '{print $2}')
	pids=$(curl -s "$ctl/procs" | grep -oE '"pid": *[0-9]+' | grep -oE '[0-9]+' | paste -sd,)
	[ -n "$ca" ] && extra=(-tls-ca "$ca")
	echo "== $name: scc-local $* ; scc-bench fanout ${extra[*]:+-tls-ca CA} ${LOAD[*]}"
	$BENCH_PIN "$BIN/scc-bench" fanout -quiet -urls "$urls" "${extra[@]}" -server-pids "$pids" "${LOAD[@]}" |
		grep -E "^(delivered|latency|check|CPU|note|result)" || true
	kill -INT "$lpid"
	wait "$lpid" || true
}

one "plain links, ws clients"
one "TLS links, ws clients" -tls
one "plain links, wss clients" -client-tls
one "TLS links, wss clients" -tls -client-tls
