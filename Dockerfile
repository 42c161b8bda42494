# syntax=docker/dockerfile:1
#
# One image with every sccgo binary; each Kubernetes workload picks its own
# with `command:` (see k8s/). Build with `make image-docker` (needs a Docker
# engine) or without one with `make image` (scripts/image.sh, umoci and
# skopeo), which lays the same files with the same config; test/k8simage
# checks the image against the declarations below.

FROM golang:1.26 AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOFLAGS=-buildvcs=false
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    mkdir -p /out && \
    go build -trimpath -ldflags='-s -w' -o /out/ ./cmd/...

# Static binaries on an empty base: no shell, no package manager; only the
# user database (nonroot, 65532, the user the manifests also require) and
# the CA bundle besides the binaries.
FROM scratch
COPY tools/image/rootfs/ /
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/ /usr/local/bin/
ARG VERSION=dev
LABEL org.opencontainers.image.title="sccgo" \
      org.opencontainers.image.description="sccgo: scc-state, scc-broker, scc-frontend, scc-bench, scc-local" \
      org.opencontainers.image.version="${VERSION}"
ENV PATH=/usr/local/bin
WORKDIR /
USER 65532:65532
# frontend, broker, state, gossip; admin ports (metrics) of frontend,
# broker, state
EXPOSE 8000 8888 7777 7946 7946/udp 8001 8889 7778
ENTRYPOINT ["/usr/local/bin/scc-frontend"]
