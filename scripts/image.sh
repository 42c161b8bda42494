#!/usr/bin/env bash
# Builds the sccgo image without a container engine: static binaries built
# on this machine, laid on an empty base with tools/image/rootfs (passwd,
# group) and the CA bundle, assembled with umoci and exported with skopeo.
# The Dockerfile declares the same files and config for users with Docker.
#
#   scripts/image.sh OUTDIR
#
# Writes OUTDIR/oci (an OCI layout, tags $VERSION and dev),
# OUTDIR/sccgo-docker.tar (docker-archive: docker load, ctr images import)
# and OUTDIR/sccgo-oci.tar (oci-archive). VERSION comes from the file
# VERSION; the prod overlay must pin the same tag.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:?usage: scripts/image.sh OUTDIR}"
GO="${GO:-go}"
for t in umoci skopeo; do
  command -v "$t" >/dev/null || { echo "image: $t missing (apt-get install -y umoci skopeo)" >&2; exit 1; }
done
version="$(tr -d ' \n' < "$root/VERSION")"
prod_tag="$(sed -n '/^images:/,/^[a-z]/s/^ *newTag: *//p' "$root/k8s/overlays/prod/kustomization.yaml")"
if [ "$prod_tag" != "$version" ]; then
  echo "image: k8s/overlays/prod pins sccgo:$prod_tag but VERSION is $version" >&2
  exit 1
fi

rm -rf "$out" && mkdir -p "$out"
out="$(cd "$out" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# The binaries, built as the Dockerfile builds them.
mkdir -p "$work/bin"
(cd "$root" && CGO_ENABLED=0 GOFLAGS=-buildvcs=false "$GO" build -trimpath -ldflags='-s -w' -o "$work/bin/" ./cmd/...)

layout="$out/oci"
umoci init --layout "$layout"
umoci new --image "$layout:$version"
umoci unpack --image "$layout:$version" "$work/bundle" >/dev/null
rootfs="$work/bundle/rootfs"
cp -a "$root/tools/image/rootfs/." "$rootfs/"
install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
install -d -m 0755 "$rootfs/usr/local/bin"
install -m 0755 "$work/bin/"* "$rootfs/usr/local/bin/"
chown -R 0:0 "$rootfs"
umoci repack --image "$layout:$version" "$work/bundle"

# The config the Dockerfile declares (ENTRYPOINT, USER, EXPOSE, LABEL).
args=(--image "$layout:$version"
  --author sccgo
  --config.user 65532:65532
  --config.entrypoint /usr/local/bin/scc-frontend
  --config.workingdir /
  --config.env PATH=/usr/local/bin
  --config.label org.opencontainers.image.title=sccgo
  --config.label "org.opencontainers.image.description=sccgo: scc-state, scc-broker, scc-frontend, scc-bench, scc-local"
  --config.label "org.opencontainers.image.version=$version")
for p in 8000/tcp 8888/tcp 7777/tcp 7946/tcp 7946/udp 8001/tcp 8889/tcp 7778/tcp; do
  args+=(--config.exposedports "$p")
done
umoci config "${args[@]}"
umoci tag --image "$layout:$version" dev
umoci gc --layout "$layout"

skopeo copy --quiet "oci:$layout:$version" "docker-archive:$out/sccgo-docker.tar:sccgo:$version" \
  --additional-tag sccgo:dev
skopeo copy --quiet "oci:$layout:$version" "oci-archive:$out/sccgo-oci.tar:$version"
echo "image: sccgo:$version (and :dev) in $layout, $out/sccgo-docker.tar, $out/sccgo-oci.tar"
