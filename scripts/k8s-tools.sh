#!/usr/bin/env bash
# Builds the Kubernetes components that make k8s-e2e uses (kube-apiserver,
# kubectl) from the pinned tool module tools/k8s, into a cache outside the
# checkout keyed by that module's go.mod, go.sum and the Go version, and
# prints the cache directory. A warm run builds nothing.
#
#   scripts/k8s-tools.sh [component ...]   default: kube-apiserver kubectl
#
# SCC_K8S_CACHE overrides the cache root (default
# ${XDG_CACHE_HOME:-$HOME/.cache}/sccgo-k8s). The build runs at nice 19;
# GOFLAGS from the environment is passed on (e.g. GOFLAGS=-p=1).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
mod="$root/tools/k8s"
GO="${GO:-go}"
components=("$@")
[ ${#components[@]} -gt 0 ] || components=(kube-apiserver kubectl)

key="$(cat "$mod/go.mod" "$mod/go.sum" <("$GO" env GOVERSION GOOS GOARCH) | sha256sum | cut -c1-16)"
cache="${SCC_K8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sccgo-k8s}/$key"
mkdir -p "$cache"

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
  (cd "$mod" && CGO_ENABLED=0 nice -n 19 "$GO" build -trimpath -ldflags "$ldflags" \
    -o "$cache/$c.tmp" "k8s.io/kubernetes/cmd/$c")
  mv "$cache/$c.tmp" "$cache/$c"
  echo "k8s-tools: $c built in $(( $(date +%s) - start ))s" >&2
done
echo "$cache"
