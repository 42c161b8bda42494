#!/usr/bin/env bash
# Runs the manifests in k8s/ against a real API server: etcd (Debian's
# etcd-server) and kube-apiserver (scripts/k8s-tools.sh, cached) on
# loopback, driven by kubectl built from the same tool module. Steps:
#
#   1. apply both overlays' Namespaces (PodSecurity labels included);
#   2. server-side dry run of both overlays (strict field validation:
#      unknown or mistyped fields fail);
#   3. apply dev for real, with no PodSecurity warning;
#   4. apply dev again and expect `kubectl diff` to exit 0;
#   5. every pod template of both overlays, created as a Pod with a
#      server-side dry run in its namespace, is admitted by the PodSecurity
#      admission at the namespace's `restricted` level.
#
# Then the same steps on broken copies of k8s/ must fail, each in the step
# that checks it: a mistyped field (step 2), a pod that violates
# `restricted` (steps 5 and 3), a changed value after the apply (step 4), a
# namespace that does not enforce `restricted` (step 1).
#
# Prints "N passed, N failed"; exits non-zero on any failure. KEEP=1 leaves
# the work directory (logs, kubeconfig) in place.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

t0=$(date +%s)
tools="$(scripts/k8s-tools.sh kube-apiserver kubectl)"
echo "k8s-e2e: tools ready in $(( $(date +%s) - t0 ))s ($tools)"
APISERVER="$tools/kube-apiserver"
KUBECTL_BIN="$tools/kubectl"
ETCD="${ETCD:-$(command -v etcd || true)}"
[ -n "$ETCD" ] || { echo "k8s-e2e: etcd missing (apt-get install -y etcd-server)"; exit 1; }

work="$(mktemp -d /tmp/sccgo-k8s-e2e.XXXXXX)"
pids=()
cleanup() {
  # The API server first (while etcd still answers), then etcd; each gets
  # 10 s after SIGTERM before SIGKILL.
  local i p n
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    p=${pids[i]}
    kill "$p" 2>/dev/null || continue
    for ((n = 0; n < 100; n++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  if [ "${KEEP:-}" = 1 ]; then echo "k8s-e2e: work directory $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

free_port() {
  python3 - 2>/dev/null <<'PY' || shuf -i 20000-60000 -n 1
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()
PY
}

# etcd on loopback.
etcd_client=$(free_port); etcd_peer=$(free_port)
"$ETCD" --name e2e --data-dir "$work/etcd" \
  --listen-client-urls "http://127.0.0.1:$etcd_client" --advertise-client-urls "http://127.0.0.1:$etcd_client" \
  --listen-peer-urls "http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
  --initial-cluster "e2e=http://127.0.0.1:$etcd_peer" >"$work/etcd.log" 2>&1 &
pids+=($!)

# kube-apiserver on loopback: a static admin token (system:masters), a
# service-account key pair, a self-signed serving certificate. The service
# range is only an allocation range; nothing is routed. No endpoint
# reconciler: it refuses a loopback advertise address.
openssl genrsa -out "$work/sa.key" 2048 2>/dev/null
openssl rsa -in "$work/sa.key" -pubout -out "$work/sa.pub" 2>/dev/null
token="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
echo "$token,e2e-admin,e2e-admin,system:masters" >"$work/tokens.csv"
api_port=$(free_port)
"$APISERVER" --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$api_port" \
  --endpoint-reconciler-type=none \
  --etcd-servers="http://127.0.0.1:$etcd_client" --cert-dir="$work/certs" \
  --token-auth-file="$work/tokens.csv" --authorization-mode=RBAC \
  --service-account-issuer=https://kubernetes.default.svc --service-account-key-file="$work/sa.pub" \
  --service-account-signing-key-file="$work/sa.key" --service-cluster-ip-range=10.96.0.0/24 \
  >"$work/apiserver.log" 2>&1 &
pids+=($!)

cat >"$work/kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster: {server: "https://127.0.0.1:$api_port", insecure-skip-tls-verify: true}
users:
- name: e2e
  user: {token: "$token"}
contexts:
- name: e2e
  context: {cluster: e2e, user: e2e}
current-context: e2e
KC
kubectl() { "$KUBECTL_BIN" --kubeconfig "$work/kubeconfig" "$@"; }

deadline=$(( $(date +%s) + 120 ))
until kubectl get --raw /readyz >/dev/null 2>&1; do
  if [ "$(date +%s)" -gt "$deadline" ]; then
    echo "k8s-e2e: API server not ready in 120s"; tail -30 "$work/apiserver.log"; tail -10 "$work/etcd.log"; exit 1
  fi
  sleep 0.5
done
echo "k8s-e2e: API server ready in $(( $(date +%s) - t0 ))s since start"
kubectl version -o json | jq -c '{client: .clientVersion.gitVersion, server: .serverVersion.gitVersion}'

passed=0; failed=0
ok() { passed=$((passed + 1)); echo "ok   $*"; }
fail() { failed=$((failed + 1)); echo "FAIL $*"; }

# Step 1: the namespaces, with their PodSecurity level.
step_namespaces() { # DIR
  local dir=$1 ov ns
  for ov in dev prod; do
    kubectl apply -f "$dir/overlays/$ov/namespace.yaml" >/dev/null || return 1
    ns=$(jq -r '.metadata.name' <(kubectl create --dry-run=client -f "$dir/overlays/$ov/namespace.yaml" -o json))
    [ "$(kubectl get ns "$ns" -o jsonpath='{.metadata.labels.pod-security\.kubernetes\.io/enforce}')" = restricted ] || {
      echo "  namespace $ns does not enforce restricted"; return 1; }
    # What kube-controller-manager would create: the namespace's default
    # ServiceAccount, without which no Pod is admitted.
    kubectl -n "$ns" get serviceaccount default >/dev/null 2>&1 ||
      kubectl -n "$ns" create serviceaccount default >/dev/null || return 1
  done
}

# Step 2: server-side dry run, strict field validation.
step_dry_run() { # DIR OVERLAY
  kubectl apply --server-side --force-conflicts --field-manager=sccgo-e2e --dry-run=server --validate=strict -k "$1/overlays/$2" >"$work/out" 2>&1 || {
    sed 's/^/  /' "$work/out" | tail -5; return 1; }
}

# Step 3: apply for real; a PodSecurity warning fails it.
step_apply() { # DIR OVERLAY
  kubectl apply --validate=strict -k "$1/overlays/$2" >"$work/out" 2>&1 || { sed 's/^/  /' "$work/out" | tail -5; return 1; }
  if grep -i 'warning' "$work/out"; then return 1; fi
}

# Step 4: re-apply, then no difference between the manifests and the server.
step_diff() { # DIR OVERLAY
  kubectl apply --validate=strict -k "$1/overlays/$2" >/dev/null 2>&1 || return 1
  step_diff_only "$1" "$2"
}
step_diff_only() { # DIR OVERLAY
  local rc=0
  kubectl diff -k "$1/overlays/$2" >"$work/out" 2>&1 || rc=$?
  if [ "$rc" -ne 0 ]; then echo "  kubectl diff exit $rc"; sed 's/^/  /' "$work/out" | head -20; return 1; fi
}

# Step 5: every pod template, as a Pod in its namespace (server-side dry
# run): PodSecurity enforces the namespace's level on Pods only, so this is
# what shows a template is admitted.
step_pss() { # DIR OVERLAY
  local n=0 pod
  kubectl apply --server-side --force-conflicts --field-manager=sccgo-e2e --dry-run=server -k "$1/overlays/$2" -o json >"$work/objs.json" 2>"$work/out" || {
    sed 's/^/  /' "$work/out" | tail -5; return 1; }
  while read -r pod; do
    n=$((n + 1))
    echo "$pod" | kubectl create --dry-run=server -f - >"$work/out" 2>&1 || {
      echo "  $(echo "$pod" | jq -r .metadata.name):"; sed 's/^/    /' "$work/out" | tail -5; return 1; }
  done < <(jq -c '.items[] | select(.kind=="Deployment" or .kind=="StatefulSet") |
    {apiVersion: "v1", kind: "Pod",
     metadata: {name: ("pss-" + (.metadata.name)), namespace: .metadata.namespace, labels: .spec.template.metadata.labels},
     spec: .spec.template.spec}' "$work/objs.json")
  [ "$n" -ge 3 ] || { echo "  only $n pod templates"; return 1; }
}

run() { # NAME FUNC ARGS...: the step must pass
  local name=$1; shift
  if "$@"; then ok "$name"; else fail "$name"; fi
}
run_fails() { # NAME PATTERN FUNC ARGS...: the step must fail, saying PATTERN
  local name=$1 pattern=$2; shift 2
  if "$@" >"$work/neg" 2>&1; then
    fail "$name (passed; it must fail)"
  elif ! grep -Eq "$pattern" "$work/neg"; then
    fail "$name (failed, but not with /$pattern/)"; sed 's/^/  | /' "$work/neg" | head -8
  else
    ok "$name"; grep -E "$pattern" "$work/neg" | head -2 | cut -c1-240 | sed 's/^/  | /'
  fi
}

run "namespaces applied, enforce restricted" step_namespaces k8s
run "dry run dev" step_dry_run k8s dev
run "dry run prod" step_dry_run k8s prod
t_apply=$(date +%s)
run "apply dev" step_apply k8s dev
run "re-apply dev, kubectl diff exits 0" step_diff k8s dev
run "PodSecurity restricted admits dev's pod templates" step_pss k8s dev
run "PodSecurity restricted admits prod's pod templates" step_pss k8s prod

# Broken copies: each must fail the step that checks it.
broken() { rm -rf "$work/broken"; cp -r k8s "$work/broken"; }
broken
sed -i '0,/readinessProbe:/s//readinesProbe:/' "$work/broken/base/state.yaml"
run_fails "a mistyped field fails the dry run" "readinesProbe" step_dry_run "$work/broken" dev
broken
sed -i '0,/allowPrivilegeEscalation: false/s//allowPrivilegeEscalation: true/' "$work/broken/base/broker.yaml"
run_fails "a pod that violates restricted fails the PodSecurity step" "violates PodSecurity.*allowPrivilegeEscalation" step_pss "$work/broken" dev
broken
sed -i '0,/drop: \["ALL"\]/s//add: ["NET_ADMIN"]/' "$work/broken/base/frontend.yaml"
run_fails "a pod that adds a capability fails the PodSecurity step" "violates PodSecurity.*capabilities" step_pss "$work/broken" prod
broken
sed -i 's/^SCC_LOG_LEVEL=info/SCC_LOG_LEVEL=debug/' "$work/broken/base/frontend.env"
run_fails "a changed value after the apply fails kubectl diff" "kubectl diff exit 1" step_diff_only "$work/broken" dev
# These two change the server; the last steps put the real manifests back.
broken
sed -i '0,/allowPrivilegeEscalation: false/s//allowPrivilegeEscalation: true/' "$work/broken/base/state.yaml"
run_fails "a pod template that violates restricted fails the apply (PodSecurity warning)" "would violate PodSecurity" step_apply "$work/broken" dev
broken
sed -i 's/pod-security.kubernetes.io\/enforce: restricted/pod-security.kubernetes.io\/enforce: baseline/' "$work/broken/overlays/dev/namespace.yaml"
run_fails "a namespace that does not enforce restricted fails step 1" "does not enforce restricted" step_namespaces "$work/broken"
run "namespaces restored" step_namespaces k8s
run "dev restored, kubectl diff exits 0" step_diff k8s dev

echo "k8s-e2e: $(( $(date +%s) - t0 ))s in all"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
