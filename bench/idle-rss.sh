#!/bin/bash
# usage: bench/idle-rss.sh N PARK FRONTENDS PROCS [HOLD_S] [CONNECT_RATE]
#
# Starts FRONTENDS standalone scc-frontend processes (SCC_PARK_IDLE_SOCKETS=PARK,
# true or false), holds N idle subscribed connections spread over them
# (round robin) from PROCS scc-bench worker processes and the source
# addresses 127.0.0.1-127.0.0.250, samples the frontends' VmRSS every 5 s
# (no forced GC) and reports the growth per connection at the last sample
# with every connection open. With FORCE_GC=S it also forces a collection
# in every frontend S seconds after all are open (through the admin port's
# /debug/pprof/heap?gc=1, SCC_ADMIN_PPROF) and reports the growth per
# connection 15 s later. Binaries from $BIN (default bin: make build).
# Each process must stay under its descriptor limit: N/FRONTENDS and
# N/PROCS below RLIMIT_NOFILE.
N=$1; PARK=$2; K=${3:-1}; P=${4:-2}; HOLD=${5:-60}; RATE=${6:-2000}
BASE=${BASE:-18200}
BIN=${BIN:-bin}
pids=(); urls=""
for i in $(seq 0 $((K-1))); do
  PORT=$((BASE+i*10))
  SCC_FRONTEND_HOST=127.0.0.1 SOCKETCLUSTER_PORT=$PORT SCC_ADMIN_PORT=$((PORT+1)) SCC_GOSSIP_PORT=$((PORT+2)) \
  SCC_ADMIN_PPROF=${FORCE_GC:+true} SCC_PARK_IDLE_SOCKETS=$PARK SCC_MAX_CONNECTIONS_PER_IP=0 SCC_LOG_LEVEL=error $BIN/scc-frontend >/tmp/fe-$PORT.log 2>&1 &
  pids+=($!)
  urls="$urls${urls:+,}ws://127.0.0.1:$PORT/socketcluster/"
done
sleep 2
sumrss() { local s=0; for p in "${pids[@]}"; do s=$((s+$(awk '/VmRSS/{print $2}' /proc/$p/status))); done; echo $s; }
sumfd() { local s=0; for p in "${pids[@]}"; do s=$((s+$(ls /proc/$p/fd | wc -l))); done; echo $s; }
B=$(sumrss)
$BIN/scc-bench conns -urls $urls -subs $N -procs $P -src-ips 127.0.0.1-127.0.0.250 -duration ${HOLD}s -connect-rate $RATE -connect-timeout 30s >/tmp/bench-idle.log 2>&1 &
BE=$!
t=0; full=""
while kill -0 $BE 2>/dev/null; do
  sleep 5; t=$((t+5))
  fds=$(sumfd)
  r=$(sumrss)
  echo "t=${t}s rss_kb=$r fds=$fds"
  if [ -z "$full" ] && [ $fds -ge $N ]; then full=$t; first=$r; fi
  [ $fds -ge $N ] && last=$r
  if [ -n "$FORCE_GC" ] && [ -n "$full" ] && [ -z "$gc_t" ] && [ $t -ge $((full+FORCE_GC)) ]; then
    for i in $(seq 0 $((K-1))); do curl -s -o /dev/null "http://127.0.0.1:$((BASE+i*10+1))/debug/pprof/heap?gc=1"; done
    gc_t=$t; echo "t=${t}s forced a collection"
  fi
  if [ -n "$gc_t" ] && [ -z "$gcr" ] && [ $t -ge $((gc_t+15)) ] && [ $fds -ge $N ]; then gcr=$r; fi
done
tail -3 /tmp/bench-idle.log
for p in "${pids[@]}"; do kill $p; done; wait 2>/dev/null
echo "park=$PARK n=$N frontends=$K rss_before_kb=$B all_open_at=${full}s rss_first_kb=$first rss_last_kb=$last" \
  "per_conn_first_B=$(( (first-B)*1024/N )) per_conn_last_B=$(( (last-B)*1024/N ))" \
  ${gcr:+"per_conn_after_gc_B=$(( (gcr-B)*1024/N ))"}
