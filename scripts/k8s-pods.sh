#!/usr/bin/env bash
# Runs the dev overlay's pods on a one-node Kubernetes cluster built from
# the pinned tool modules (scripts/k8s-tools.sh: kube-apiserver,
# kube-controller-manager, kube-scheduler, kubelet, kube-proxy, kubectl;
# CoreDNS from tools/coredns), with Debian's etcd, containerd, runc and CNI
# plugins, and the image `make image` built. Everything runs inside a
# network namespace of its own (and a private mount namespace), so no
# route, bridge or iptables rule touches the host's; on exit every process
# is stopped, and the namespace, the cgroups and the work directory are
# removed. Needs root. Steps, each of which fails the run:
#
#   1. the node registers and is Ready;
#   2. the dev overlay applied, state, brokers and frontend pass their
#      readiness probes (the time from apply to Ready is printed);
#   3. the cluster DNS (CoreDNS) resolves the Services;
#   4. with two frontends (the HPA's minimum raised to 2), a client
#      through the frontend Service (kube-proxy, iptables mode) and a
#      client on the other frontend pod exchange messages;
#   5. kubectl rollout restart of the frontends while a subscriber is
#      connected through the Service: each time it is dropped it must be
#      back within the Go client's reconnect bound (test/k8spods); then
#      the same with a subscriber that does not reconnect must fail.
#   6. after the teardown, no namespace, cgroup, sandbox netns file or
#      mount of the run is left, and the host's nftables/iptables rules and
#      links are what they were before.
#
# Prints "N passed, N failed"; exits non-zero on any failure. KEEP=1 keeps
# the work directory (logs, configs) in place.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

# Addresses inside the namespace. Nothing here is routed off the machine:
# the namespace's only way out is an empty bridge.
NODE_IP=10.250.0.1
POD_CIDR=10.244.0.0/24
SERVICE_CIDR=10.96.0.0/24
DNS_IP=10.96.0.10
NS=sccgo-dev
# kube-proxy's mode: iptables (Debian's iptables, nft backend) or nftables
# (needs the nft tool).
PROXY_MODE="${SCC_K8S_PODS_PROXY_MODE:-iptables}"

if [ "${1:-}" != --inside ]; then
  # ---- On the host: build, prepare, then run the rest inside the namespace.
  [ "$(id -u)" = 0 ] || { echo "k8s-pods: needs root (network namespace, containerd, kubelet)"; exit 1; }
  for t in ip unshare nsenter containerd ctr runc iptables umoci skopeo jq etcd openssl; do
    command -v "$t" >/dev/null || {
      echo "k8s-pods: $t missing (apt-get install -y containerd runc containernetworking-plugins iptables umoci skopeo jq etcd-server openssl)"; exit 1; }
  done
  if [ "$PROXY_MODE" = nftables ]; then
    command -v nft >/dev/null || { echo "k8s-pods: nft missing (apt-get install -y nftables)"; exit 1; }
  fi
  for p in bridge host-local loopback; do
    [ -x "/usr/lib/cni/$p" ] || { echo "k8s-pods: /usr/lib/cni/$p missing (apt-get install -y containernetworking-plugins)"; exit 1; }
  done
  archive="$root/bin/image/sccgo-docker.tar"
  [ -f "$archive" ] || { echo "k8s-pods: $archive missing (make image)"; exit 1; }

  GO="${GO:-go}"
  t0=$(date +%s)
  k8s="$(GO="$GO" scripts/k8s-tools.sh kube-apiserver kubectl kubelet kube-controller-manager kube-scheduler kube-proxy)"
  dns="$(GO="$GO" scripts/k8s-tools.sh coredns)"
  echo "k8s-pods: tools ready in $(( $(date +%s) - t0 ))s ($k8s, $dns)"

  work="$(mktemp -d /tmp/sccgo-k8s-pods.XXXXXX)"
  id="$(basename "$work" | cut -d. -f2)"
  netns="sccgo-pods-$id"
  cgroot="sccgo-pods-$id"
  inner=
  # teardown stops what runs in the namespace and removes the namespace,
  # kubelet's cgroups and the pod sandboxes' netns files; it may run twice.
  teardown() {
    local p d n
    set +e
    if [ -n "$inner" ]; then
      kill -TERM "$inner" 2>/dev/null
      for ((n = 0; n < 600; n++)); do kill -0 "$inner" 2>/dev/null || break; sleep 0.1; done
    fi
    # Whatever still runs in the namespace was started by this run.
    for p in $(ip netns pids "$netns" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
    ip netns del "$netns" 2>/dev/null
    # Pod processes whose shims were killed above are left in kubelet's
    # cgroup root; then the pods' cgroups, deepest first.
    for ((n = 0; n < 50; n++)); do
      p="$(find /sys/fs/cgroup/pids/"$cgroot" /sys/fs/cgroup/"$cgroot" -name cgroup.procs -exec cat {} + 2>/dev/null)"
      [ -n "$p" ] || break
      kill -9 $p 2>/dev/null
      sleep 0.1
    done
    for d in /sys/fs/cgroup/*/"$cgroot" /sys/fs/cgroup/"$cgroot"; do
      [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
    done
    # Network namespaces the CRI made for pod sandboxes: their mounts were
    # in the private mount namespace, the files are on the host's /run.
    if [ -f "$work/netns.before" ]; then
      for p in $(comm -13 "$work/netns.before" <(ls /run/netns 2>/dev/null | sort) | grep '^cni-'); do
        rm -f "/run/netns/$p"
      done
    fi
    if [ "$netns_mounted" = 0 ] && [ -z "$(ls -A /run/netns 2>/dev/null)" ]; then
      umount /run/netns 2>/dev/null
    fi
    # Mount points the inside made for the bind mounts below, if it did.
    if [ -f "$work/created-dirs" ]; then
      while read -r d; do rmdir "$d" 2>/dev/null; done <"$work/created-dirs"
    fi
    set -e
  }
  host_files() { # where kubelet and libcni write on the host unless moved
    # On a fresh machine none of them may exist yet: find then fails,
    # which must not end the run.
    { find /var/log/pods /var/log/containers /var/lib/kubelet /var/lib/cni /run/containerd -mindepth 1 -maxdepth 3 2>/dev/null || true; } | sort
  }
  leftovers() { # what teardown should have removed, if anything is left
    ip netns list 2>/dev/null | grep -w "$netns"
    ls -d /sys/fs/cgroup/*/"$cgroot" /sys/fs/cgroup/"$cgroot" 2>/dev/null
    [ -f "$work/netns.before" ] && comm -13 "$work/netns.before" <(ls /run/netns 2>/dev/null | sort) | grep "^cni-"
    grep " $work" /proc/mounts
    comm -13 "$work/files.before" <(host_files)
    true
  }
  outer_cleanup() {
    local rc=$?
    teardown
    if [ "${KEEP:-}" = 1 ]; then echo "k8s-pods: work directory $work"; else rm -rf "$work"; fi
    exit "$rc"
  }
  netns_mounted=1
  trap outer_cleanup EXIT
  trap 'echo "k8s-pods: interrupted"; exit 130' INT TERM
  mkdir -p "$work/bin"
  ls /run/netns 2>/dev/null | sort >"$work/netns.before" || true
  # ip netns add makes /run/netns a mount point the first time; undo that
  # too if this run was the first.
  netns_mounted=0
  if grep -q ' /run/netns ' /proc/mounts; then netns_mounted=1; fi

  # The client checks (with the race detector) and the sandbox ("pause")
  # image, built on the host.
  (cd "$root" && "$GO" test -race -c -o "$work/bin/k8spods.test" ./test/k8spods/ &&
    CGO_ENABLED=0 "$GO" build -trimpath -ldflags='-s -w' -o "$work/bin/pause" ./test/k8spods/pause/)
  umoci init --layout "$work/pause-oci" >/dev/null
  umoci new --image "$work/pause-oci:1" >/dev/null
  umoci unpack --image "$work/pause-oci:1" "$work/pause-bundle" >/dev/null
  install -m 0755 "$work/bin/pause" "$work/pause-bundle/rootfs/pause"
  umoci repack --image "$work/pause-oci:1" "$work/pause-bundle" >/dev/null
  umoci config --image "$work/pause-oci:1" --config.entrypoint /pause --config.user 65535:65535 >/dev/null
  skopeo copy --quiet "oci:$work/pause-oci:1" "docker-archive:$work/pause.tar:sccgo.local/pause:1"
  rm -rf "$work/pause-bundle" "$work/pause-oci"

  # The host's packet filter and links, to compare after the run.
  host_state() {
    { nft list ruleset 2>/dev/null | sed -E 's/counter packets [0-9]+ bytes [0-9]+/counter/'
      iptables-legacy-save 2>/dev/null | grep -v '^#' | sed -E 's/\[[0-9]+:[0-9]+\]//'
      ip -o link show | awk -F': ' '{print $2}' | sort; } || true
  }
  host_state >"$work/host.before"
  host_files >"$work/files.before"

  ip netns add "$netns"
  # The run inside in the background, so that a signal to this script
  # reaches the trap at once; the trap stops the inside first.
  unshare --mount --propagation private nsenter --net="/run/netns/$netns" -- \
    env PROXY_MODE="$PROXY_MODE" K8S="$k8s" DNS_BIN="$dns" WORK="$work" CGROOT="$cgroot" ARCHIVE="$archive" T0="$t0" \
    bash "$0" --inside &
  inner=$!
  wait "$inner" || true
  inner=
  read -r passed failed 2>/dev/null <"$work/counts" || { passed=0; failed=1; echo "FAIL the run inside the namespace ended early"; }
  # Last steps: the teardown leaves nothing, and nothing of the run
  # reached the host's network namespace.
  teardown
  left="$(leftovers)"
  if [ -z "$left" ]; then
    passed=$((passed + 1)); echo "ok   teardown: no namespace, cgroup, sandbox netns, mount or file under /var or /run/containerd left"
  else
    failed=$((failed + 1)); echo "FAIL teardown left:"; echo "$left" | sed 's/^/  | /'
  fi
  if diff <(host_state) "$work/host.before" >"$work/host.diff"; then
    passed=$((passed + 1)); echo "ok   the host's packet filter rules and links are unchanged"
  else
    failed=$((failed + 1)); echo "FAIL the host's packet filter rules or links changed"; head -20 "$work/host.diff" | sed 's/^/  | /'
  fi
  echo "k8s-pods: $(( $(date +%s) - t0 ))s in all"
  echo "$passed passed, $failed failed"
  [ "$failed" -eq 0 ]
  exit
fi

# ---- Inside the network namespace and a private mount namespace.
work="$WORK"
pids=()
kubectl() { "$K8S/kubectl" --kubeconfig "$work/kubeconfig" --cache-dir "$work/kube-cache" "$@"; }
ctr() { command ctr -a "$work/containerd/containerd.sock" -n k8s.io "$@"; }
inner_cleanup() {
  local rc=$? i p n
  set +e
  # kubelet first, so that it does not restart what is stopped below; then
  # the pods' containers and sandboxes (their shims are not our children);
  # then the other daemons in reverse order of start.
  if [ ${#pids[@]} -gt 0 ]; then
    if [ -n "${kubelet_pid:-}" ]; then kill "$kubelet_pid" 2>/dev/null; wait "$kubelet_pid" 2>/dev/null; fi
    if [ -S "$work/containerd/containerd.sock" ]; then
      for c in $(ctr tasks ls -q 2>/dev/null); do ctr tasks kill -s SIGKILL "$c" >/dev/null 2>&1; done
      for ((n = 0; n < 50; n++)); do
        ctr tasks ls 2>/dev/null | awk 'NR > 1 && $3 != "STOPPED"' | grep -q . || break
        sleep 0.2
      done
      for c in $(ctr tasks ls -q 2>/dev/null); do ctr tasks rm -f "$c" >/dev/null 2>&1; done
      for c in $(ctr containers ls -q 2>/dev/null); do ctr containers rm "$c" >/dev/null 2>&1; done
    fi
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
      p=${pids[i]}
      kill "$p" 2>/dev/null || continue
      for ((n = 0; n < 100; n++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$p" 2>/dev/null
      wait "$p" 2>/dev/null
    done
  fi
  # Mounts die with this mount namespace; unmount the work directory's
  # anyway, so that the host's rm -rf finds plain files.
  grep " $work" /proc/self/mounts | awk '{print $2}' | sort -r | while read -r m; do umount -l "$m" 2>/dev/null; done
  exit "$rc"
}
trap inner_cleanup EXIT
trap 'exit 130' INT TERM

passed=0; failed=0
ok() { passed=$((passed + 1)); echo "ok   $*"; }
fail() { failed=$((failed + 1)); echo "FAIL $*"; }
finish() { # the host side prints the summary
  echo "$passed $failed" >"$work/counts"
  exit 0
}
logs() { # FILE...: the tail of each log, to show why a step failed
  local f
  for f in "$@"; do echo "  --- $(basename "$f")"; tail -15 "$f" | sed 's/^/  | /'; done
}
wait_for() { # SECONDS WHAT COMMAND...: poll every 0.5 s
  local secs=$1 what=$2 deadline; shift 2
  deadline=$(( $(date +%s) + secs ))
  until "$@" >/dev/null 2>&1; do
    if [ "$(date +%s)" -gt "$deadline" ]; then echo "  $what: not within ${secs}s"; return 1; fi
    sleep 0.5
  done
}

# Paths that kubelet (container log links, device plugin socket), libcni
# (its result cache) and containerd's shims (sockets, runc state) write to
# and no setting moves: bind-mounted from the work directory, in this mount
# namespace only. A mount point made here is removed again.
for d in /var/log/containers /var/lib/kubelet /var/lib/cni /run/containerd; do
  if [ ! -d "$d" ]; then mkdir -p "$d"; echo "$d" >>"$work/created-dirs"; fi
  mkdir -p "$work/host$d"
  mount --bind "$work/host$d" "$d"
done

# The namespace's network: loopback, and an empty bridge that holds the
# node's address and the default route (so that nothing can leave).
ip link set lo up
ip link add sccgo0 type bridge
ip addr add "$NODE_IP/24" dev sccgo0
ip link set sccgo0 up
ip route add default dev sccgo0
echo 1 >/proc/sys/net/ipv4/ip_forward
# Pod-to-Service-to-pod on the same bridge needs the bridge's traffic to
# pass iptables (br_netfilter, set per network namespace); without that
# module kube-proxy masquerades all Service traffic instead, so that the
# replies come back through this namespace's stack.
masquerade_all=false
if [ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]; then
  echo 1 >/proc/sys/net/bridge/bridge-nf-call-iptables
else
  masquerade_all=true
fi

# kubelet's cgroup root: in each cgroup v1 hierarchy (cpuset needs its
# parent's cpus and mems), or, on a cgroup v2 machine (not tried here), one
# cgroup that hands its controllers down.
if [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ]; then
  mkdir -p "/sys/fs/cgroup/$CGROOT"
  sed 's/[^ ]*/+&/g' /sys/fs/cgroup/cgroup.subtree_control >"/sys/fs/cgroup/$CGROOT/cgroup.subtree_control" || true
else
  for d in /sys/fs/cgroup/*/; do
    case "$d" in */unified/) continue ;; esac
    mkdir -p "$d$CGROOT"
    if [ -f "$d/cpuset.cpus" ]; then
      cat "$d/cpuset.cpus" >"$d$CGROOT/cpuset.cpus"
      cat "$d/cpuset.mems" >"$d$CGROOT/cpuset.mems"
    fi
  done
fi

# etcd.
etcd --name pods --data-dir "$work/etcd" \
  --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
  --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
  --initial-cluster pods=http://127.0.0.1:2380 >"$work/etcd.log" 2>&1 &
pids+=($!)

# kube-apiserver on the node address: a static admin token (system:masters)
# that every component uses, a service-account key pair, a self-signed
# serving certificate.
openssl genrsa -out "$work/sa.key" 2048 2>/dev/null
openssl rsa -in "$work/sa.key" -pubout -out "$work/sa.pub" 2>/dev/null
token="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
echo "$token,pods-admin,pods-admin,system:masters" >"$work/tokens.csv"
"$K8S/kube-apiserver" --bind-address=0.0.0.0 --advertise-address="$NODE_IP" --secure-port=6443 \
  --etcd-servers=http://127.0.0.1:2379 --cert-dir="$work/certs" \
  --token-auth-file="$work/tokens.csv" --authorization-mode=RBAC \
  --service-account-issuer=https://kubernetes.default.svc --service-account-key-file="$work/sa.pub" \
  --service-account-signing-key-file="$work/sa.key" --service-cluster-ip-range="$SERVICE_CIDR" \
  >"$work/apiserver.log" 2>&1 &
pids+=($!)
cat >"$work/kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: pods
  cluster: {server: "https://$NODE_IP:6443", insecure-skip-tls-verify: true}
users:
- name: pods
  user: {token: "$token"}
contexts:
- name: pods
  context: {cluster: pods, user: pods}
current-context: pods
KC
wait_for 120 "API server ready" kubectl get --raw /readyz || { logs "$work/apiserver.log" "$work/etcd.log"; fail "control plane"; finish; }
echo "k8s-pods: API server ready in $(( $(date +%s) - T0 ))s since start"

"$K8S/kube-controller-manager" --kubeconfig="$work/kubeconfig" --authentication-kubeconfig="$work/kubeconfig" \
  --authorization-kubeconfig="$work/kubeconfig" --leader-elect=false --bind-address=127.0.0.1 \
  --controllers='*,-nodeipam' --service-account-private-key-file="$work/sa.key" \
  --root-ca-file="$work/certs/apiserver.crt" --use-service-account-credentials=false \
  --cluster-cidr="$POD_CIDR" --service-cluster-ip-range="$SERVICE_CIDR" \
  >"$work/controller-manager.log" 2>&1 &
pids+=($!)
"$K8S/kube-scheduler" --kubeconfig="$work/kubeconfig" --authentication-kubeconfig="$work/kubeconfig" \
  --authorization-kubeconfig="$work/kubeconfig" --leader-elect=false --bind-address=127.0.0.1 \
  >"$work/scheduler.log" 2>&1 &
pids+=($!)

# containerd 1.6 (Debian) with its CRI plugin: state under the work
# directory, runc with cgroupfs, the local sandbox image, the CNI bridge.
mkdir -p "$work/containerd" "$work/cni/net.d"
cat >"$work/containerd/config.toml" <<TOML
version = 2
root = "$work/containerd/root"
state = "$work/containerd/state"
[grpc]
  address = "$work/containerd/containerd.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "$work/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "sccgo.local/pause:1"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$work/cni/net.d"
TOML
cat >"$work/cni/net.d/10-sccgo.conflist" <<JSON
{"cniVersion": "0.4.0", "name": "sccgo", "plugins": [
  {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_CIDR"}]],
            "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$work/cni/ipam"}}]}
JSON
containerd --config "$work/containerd/config.toml" >"$work/containerd.log" 2>&1 &
pids+=($!)
wait_for 30 "containerd answering" ctr version || { logs "$work/containerd.log"; fail "containerd"; finish; }
ctr images import "$ARCHIVE" >/dev/null && ctr images import "$work/pause.tar" >/dev/null ||
  { fail "import the images into containerd"; finish; }
ctr images ls -q | sed 's/^/  image: /'

# kubelet: what a cgroup v1 machine without systemd and a containerd 1.6
# need (see k8s/README.md).
cat >"$work/resolv.conf" <<'RC'
# The node's resolver for pods: none. Pods use the cluster DNS only.
RC
mkdir -p "$work/kubelet"
cat >"$work/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /$CGROOT
failSwapOn: false
resolvConf: $work/resolv.conf
podLogsDir: $work/pod-logs
clusterDNS: [$DNS_IP]
clusterDomain: cluster.local
containerRuntimeEndpoint: unix://$work/containerd/containerd.sock
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
address: 127.0.0.1
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
serializeImagePulls: false
evictionHard: {memory.available: "1Mi", nodefs.available: "1%", imagefs.available: "1%"}
imageGCHighThresholdPercent: 100
YAML
"$K8S/kubelet" --config="$work/kubelet.yaml" --kubeconfig="$work/kubeconfig" --root-dir="$work/kubelet" \
  --hostname-override=sccgo-node --node-ip="$NODE_IP" >"$work/kubelet.log" 2>&1 &
kubelet_pid=$!
pids+=($kubelet_pid)

# kube-proxy ($PROXY_MODE mode), in this namespace only. It leaves the
# conntrack sysctls alone (they are the host's).
cat >"$work/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: $PROXY_MODE
clusterCIDR: $POD_CIDR
iptables: {masqueradeAll: $masquerade_all}
nftables: {masqueradeAll: $masquerade_all}
hostnameOverride: sccgo-node
clientConnection: {kubeconfig: $work/kubeconfig}
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
YAML
"$K8S/kube-proxy" --config="$work/kube-proxy.yaml" >"$work/kube-proxy.log" 2>&1 &
pids+=($!)

# CoreDNS: cluster DNS from the API server, nothing forwarded. The
# kube-dns Service has no selector; its EndpointSlice names the node.
cat >"$work/Corefile" <<CF
.:53 {
    errors
    health 127.0.0.1:8080
    ready 127.0.0.1:8181
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $work/kubeconfig pods
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    cache 30
    loadbalance
}
CF
"$DNS_BIN/coredns" -conf "$work/Corefile" >"$work/coredns.log" 2>&1 &
pids+=($!)
kubectl apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Service
metadata: {name: kube-dns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  clusterIP: $DNS_IP
  ports:
  - {name: dns, port: 53, protocol: UDP}
  - {name: dns-tcp, port: 53, protocol: TCP}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: kube-dns-node
  namespace: kube-system
  labels: {kubernetes.io/service-name: kube-dns, endpointslice.kubernetes.io/managed-by: sccgo-k8s-pods}
addressType: IPv4
endpoints:
- addresses: ["$NODE_IP"]
  conditions: {ready: true}
ports:
- {name: dns, port: 53, protocol: UDP}
- {name: dns-tcp, port: 53, protocol: TCP}
YAML

# Step 1: the node.
node_ready() { [ "$(kubectl get node sccgo-node -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ]; }
if wait_for 120 "node Ready" node_ready; then
  ok "node sccgo-node Ready ($(( $(date +%s) - T0 ))s since start)"
else
  fail "node Ready"; logs "$work/kubelet.log" "$work/containerd.log"; finish
fi

# Step 2: the dev overlay, until every pod passes its readiness probe.
kubectl apply -f k8s/overlays/dev/namespace.yaml >/dev/null
wait_for 60 "default ServiceAccount" kubectl -n "$NS" get serviceaccount default || true
t_apply=$(date +%s%3N)
ready_all() {
  kubectl -n "$NS" rollout status deployment/scc-state --timeout=5s &&
    kubectl -n "$NS" rollout status statefulset/scc-broker --timeout=5s &&
    kubectl -n "$NS" rollout status deployment/scc-frontend --timeout=5s
}
if kubectl apply -k k8s/overlays/dev >"$work/apply.out" 2>&1 && wait_for 300 "state, brokers, frontend Ready" ready_all; then
  ok "dev overlay applied; state, 2 brokers and the frontend Ready $(awk -v a="$t_apply" -v b="$(date +%s%3N)" 'BEGIN { printf "%.1f", (b - a) / 1000 }')s after apply"
  kubectl -n "$NS" get pods -o wide | sed 's/^/  /'
else
  fail "dev overlay Ready"; cat "$work/apply.out"
  kubectl -n "$NS" get pods -o wide; kubectl -n "$NS" get events --sort-by=.lastTimestamp | tail -20
  logs "$work/kubelet.log" "$work/coredns.log" "$work/kube-proxy.log"; finish
fi

checks="$work/bin/k8spods.test"
export SCC_K8S_PODS_NAMESPACE="$NS" SCC_K8S_PODS_DNS="$DNS_IP:53"
export SCC_K8S_PODS_SERVICE
SCC_K8S_PODS_SERVICE="$(kubectl -n "$NS" get service scc-frontend -o jsonpath='{.spec.clusterIP}')"
gocheck() { # NAME TEST
  local name=$1 test=$2
  if "$checks" -test.run "^$test\$" -test.v -test.count=1 -test.timeout 10m >"$work/$test.out" 2>&1; then
    ok "$name"; grep -E '^\s+k8spods_test.go' "$work/$test.out" | sed 's/^\s*/  /'
  else
    fail "$name"; sed 's/^/  | /' "$work/$test.out" | tail -30
  fi
}
gocheck_fails() { # NAME PATTERN TEST: the check must fail, saying PATTERN
  local name=$1 pattern=$2 test=$3
  if "$checks" -test.run "^$test\$" -test.v -test.count=1 -test.timeout 10m >"$work/$test.neg" 2>&1; then
    fail "$name (passed; it must fail)"; tail -5 "$work/$test.neg" | sed 's/^/  | /'
  elif ! grep -Eq "$pattern" "$work/$test.neg"; then
    fail "$name (failed, but not with /$pattern/)"; sed 's/^/  | /' "$work/$test.neg" | tail -20
  else
    ok "$name"; grep -E "$pattern" "$work/$test.neg" | head -1 | cut -c1-240 | sed 's/^\s*/  | /'
  fi
}

# Step 3: cluster DNS.
gocheck "CoreDNS resolves scc-state, scc-frontend and the brokers" TestClusterDNS

# Step 4: two frontends; a client through the Service, one on the other pod.
kubectl -n "$NS" patch hpa scc-frontend --type=merge -p '{"spec":{"minReplicas":2}}' >/dev/null
frontends() { kubectl -n "$NS" get pods -l app.kubernetes.io/component=frontend -o json |
  jq -r '[.items[] | select(.metadata.deletionTimestamp == null) | select(any(.status.conditions[]?; .type == "Ready" and .status == "True")) | .status.podIP] | join(",")'; }
two_frontends() { [ "$(frontends | tr ',' '\n' | grep -c .)" = 2 ]; }
if wait_for 180 "two frontends Ready" two_frontends; then
  SCC_K8S_PODS_FRONTENDS="$(frontends)" gocheck "messages cross two frontends, one client through the Service (ClusterIP $SCC_K8S_PODS_SERVICE)" TestAcrossFrontends
else
  fail "two frontends Ready (HPA minReplicas 2)"; kubectl -n "$NS" get pods -o wide
fi

# Step 5: rolling restart with a subscriber connected through the Service.
printf '#!/bin/sh\nexec %q --kubeconfig %q --cache-dir %q "$@"\n' "$K8S/kubectl" "$work/kubeconfig" "$work/kube-cache" >"$work/bin/kubectl"
chmod +x "$work/bin/kubectl"
export SCC_K8S_PODS_KUBECTL="$work/bin/kubectl"
gocheck "rolling restart of the frontends: the subscriber is never away longer than the reconnect bound" TestRollingRestart
# The same with a subscriber that does not reconnect must fail: the check
# sees a subscriber that is lost.
SCC_K8S_PODS_NO_RECONNECT=1 gocheck_fails "a subscriber that does not come back fails the rolling-restart check" \
  "subscriber disconnected at .* still not back after" TestRollingRestart

finish
