#!/usr/bin/env bash
# Builds the Kubernetes components that make k8s-e2e and make k8s-pods use
# from a pinned tool module, into a cache outside the checkout keyed by that
# module's go.mod, go.sum and the Go version, and prints the cache
# directory. A warm run builds nothing.
#
#   scripts/k8s-tools.sh [component ...]   default: kube-apiserver kubectl
#
# Components: kube-apiserver, kubectl, kubelet, kube-controller-manager,
# kube-scheduler, kube-proxy (module tools/k8s, k8s.io/kubernetes/cmd/...),
# or coredns (module tools/coredns, a CoreDNS with only the plugins a
# one-node cluster needs). One call builds from one module; the two modules
# have separate cache directories.
#
# SCC_K8S_CACHE overrides the cache root (default
# ${XDG_CACHE_HOME:-$HOME/.cache}/sccgo-k8s). The build runs at nice 19;
# GOFLAGS from the environment is passed on (e.g. GOFLAGS=-p=1).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
GO="${GO:-go}"
components=("$@")
[ ${#components[@]} -gt 0 ] || components=(kube-apiserver kubectl)
mod="$root/tools/k8s"
if [ "${components[0]}" = coredns ]; then mod="$root/tools/coredns"; fi
for c in "${components[@]}"; do
  case "$c" in
  coredns) [ "$mod" = "$root/tools/coredns" ] ;;
  kube-apiserver | kubectl | kubelet | kube-controller-manager | kube-scheduler | kube-proxy) [ "$mod" = "$root/tools/k8s" ] ;;
  *) echo "k8s-tools: unknown component $c" >&2; exit 2 ;;
  esac || { echo "k8s-tools: build coredns in a call of its own" >&2; exit 2; }
done

key="$(cat "$mod/go.mod" "$mod/go.sum" <("$GO" env GOVERSION GOOS GOARCH) | sha256sum | cut -c1-16)"
cache="${SCC_K8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sccgo-k8s}/$key"
mkdir -p "$cache"

# CoreDNS: its own module; it reports its module version itself.
if [ "$mod" = "$root/tools/coredns" ]; then
  c=coredns
  if [ ! -x "$cache/$c" ]; then
    echo "k8s-tools: building $c into $cache" >&2
    start=$(date +%s)
    TIMEFORMAT="k8s-tools: $c CPU %Us user %Ss system, %Rs wall"
    time (cd "$mod" && CGO_ENABLED=0 nice -n 19 "$GO" build -trimpath -ldflags "-s -w" -o "$cache/$c.tmp" .)
    mv "$cache/$c.tmp" "$cache/$c"
    echo "k8s-tools: $c built in $(( $(date +%s) - start ))s" >&2
  fi
  echo "$cache"
  exit 0
fi

# The Kubernetes version is the one tools/k8s requires; kubectl and the
# API server report it (kubectl refuses a server version it cannot parse).
version="$(cd "$mod" && "$GO" list -m -f '{{.Version}}' k8s.io/kubernetes)"
minor="$(echo "$version" | cut -d. -f2)"
pkg=k8s.io/component-base/version
ldflags="-s -w"
for v in "gitVersion=$version" "gitMajor=1" "gitMinor=$minor" \
  "gitCommit=0000000000000000000000000000000000000000" "gitTreeState=clean" \
  "buildDate=1970-01-01T00:00:00Z"; do
  ldflags+=" -X $pkg.$v -X k8s.io/client-go/pkg/version.$v"
done

for c in "${components[@]}"; do
  if [ -x "$cache/$c" ]; then
    continue
  fi
  echo "k8s-tools: building $c $version into $cache (cold build: minutes)" >&2
  start=$(date +%s)
  TIMEFORMAT="k8s-tools: $c CPU %Us user %Ss system, %Rs wall"
  time (cd "$mod" && CGO_ENABLED=0 nice -n 19 "$GO" build -trimpath -ldflags "$ldflags" \
    -o "$cache/$c.tmp" "k8s.io/kubernetes/cmd/$c")
  mv "$cache/$c.tmp" "$cache/$c"
  echo "k8s-tools: $c built in $(( $(date +%s) - start ))s" >&2
done
echo "$cache"
