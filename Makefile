# sccgo: make help lists the targets.
SHELL := /bin/bash
GO ?= go
BIN := bin
CMDS := scc-state scc-broker scc-frontend scc-bench scc-local
FUZZTIME ?= 10s
PKGS := ./...

.PHONY: help build test test-short test-go node-deps fuzz bench bench-go lint run clean

help: ## list the targets
	@grep -E '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## build every binary into bin/
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ $(addprefix ./cmd/,$(CMDS))

node-deps: ## install the npm packages the interop tests use
	@cd test/interop && if [ ! -d node_modules/socketcluster-client ]; then npm ci --no-audit --no-fund || npm install --no-audit --no-fund; fi
	@cd test/browser && if [ ! -d node_modules/playwright-core ]; then npm ci --no-audit --no-fund || npm install --no-audit --no-fund; fi

# The in-process cluster scenarios kill brokers and frontends under load and
# wait on failure detection; they run after the other packages, on their
# own, so that no other package's tests take the CPU their timers need.
SERIAL_PKGS := ./internal/clustertest/
test: build node-deps ## run every test with the race detector
	$(GO) test -race -count=1 -timeout 20m $$($(GO) list $(PKGS) | grep -v '/internal/clustertest$$')
	$(GO) test -race -count=1 -timeout 20m $(SERIAL_PKGS)

test-short: ## run the fast tests only
	$(GO) test -race -count=1 -short $(PKGS)

# Targets are found with grep, so only packages that have one are built:
# the run takes about (number of targets) x FUZZTIME plus their builds.
# scripts/fuzz-one.sh retries a target up to three times after Go 1.26's deadline race.
fuzz: ## run every fuzz target for FUZZTIME each
	@set -e; for dir in $$(grep -rl --include='*_test.go' --exclude-dir=node_modules '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
	  for f in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go | cut -d' ' -f2); do \
	    echo "fuzz $$dir $$f"; scripts/fuzz-one.sh "$(GO)" $$dir $$f $(FUZZTIME); \
	  done; done

bench: ## load-test a local cluster (or standalone frontend) with scc-bench; results in bench/results/
	GO="$(GO)" BIN="$(BIN)" bench/run.sh

bench-go: ## run the Go benchmarks
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

lint: ## gofmt check and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

run: build ## start a local cluster (1 state, 2 brokers, 2 frontends) on loopback; Ctrl-C stops it
	$(BIN)/scc-local $(RUNFLAGS)

run-standalone: build ## start one standalone frontend on :8000 (no cluster)
	SCC_FRONTEND_HOST=127.0.0.1 $(BIN)/scc-frontend

clean: ## remove build output
	rm -rf $(BIN)

VERSION := $(shell cat VERSION)
IMAGE_DIR := $(BIN)/image

.PHONY: image image-docker image-test
image: ## build the image without a Docker engine (umoci, skopeo): bin/image/{oci,sccgo-docker.tar,sccgo-oci.tar}, tagged with VERSION and dev
	GO="$(GO)" scripts/image.sh $(IMAGE_DIR)

image-docker: ## build the same image with a Docker engine, tagged with VERSION and dev
	docker build --build-arg VERSION=$(VERSION) -t sccgo:$(VERSION) -t sccgo:dev .

image-test: image ## check the image against the Dockerfile and run its binaries under runc (root)
	SCC_IMAGE_LAYOUT=$(CURDIR)/$(IMAGE_DIR)/oci $(GO) test -count=1 -v -timeout 5m ./test/k8simage/

# Fault scenarios and soak on the real binaries (package chaos); results and
# logs in chaos/results/.
CHAOS_QUICK ?= ^TestScenario(0[1-6]|2[0-5])
SOAK_DURATION ?= 10m
.PHONY: chaos chaos-quick soak
chaos: build ## run every fault scenario on the real binaries (results in chaos/results/)
	SCC_CHAOS=1 $(GO) test -count=1 -v -timeout 30m -run '^TestScenario' ./chaos/

chaos-quick: build ## run the fast fault scenarios 1-6 and the history scenarios 20-25 (CI)
	SCC_CHAOS=1 $(GO) test -count=1 -v -timeout 10m -run '$(CHAOS_QUICK)' ./chaos/

soak: build ## SOAK_DURATION (default 10m) of load with broker churn; chaos/results/soak.json
	SCC_SOAK=1 SOAK_DURATION=$(SOAK_DURATION) $(GO) test -count=1 -v -timeout 3h -run '^TestSoak$$' ./chaos/

# Kubernetes against real components: kube-apiserver, kubectl and the node's
# components built from the pinned tool module tools/k8s, CoreDNS from
# tools/coredns (cached outside the checkout, see scripts/k8s-tools.sh);
# etcd, containerd, runc, the CNI plugins and iptables from Debian.
.PHONY: k8s-tools k8s-e2e k8s-pods
k8s-tools: ## build (or find cached) the Kubernetes components (tools/k8s) and CoreDNS (tools/coredns)
	GO="$(GO)" scripts/k8s-tools.sh kube-apiserver kubectl kubelet kube-controller-manager kube-scheduler kube-proxy
	GO="$(GO)" scripts/k8s-tools.sh coredns

k8s-e2e: ## apply the manifests to a real API server on loopback: dry runs, apply, diff, PodSecurity, broken copies
	GO="$(GO)" scripts/k8s-e2e.sh

k8s-pods: image ## run the dev overlay's pods on a one-node cluster in a network namespace (root): Ready, DNS, Service, rolling restart
	GO="$(GO)" scripts/k8s-pods.sh
