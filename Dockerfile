# syntax=docker/dockerfile:1
#
# One image with every sccgo binary; each Kubernetes workload picks its own
# with `command:` (see k8s/). Build with `make image` (needs a Docker
# engine).

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

# Static binaries on distroless: no shell, no package manager, runs as the
# nonroot user (65532) that the manifests also require.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ /usr/local/bin/
USER 65532:65532
# frontend, broker, state, gossip; admin ports (metrics) of frontend,
# broker, state
EXPOSE 8000 8888 7777 7946 7946/udp 8001 8889 7778
ENTRYPOINT ["/usr/local/bin/scc-frontend"]
