# cacheproxy: a sharding memcached/Redis proxy.
GO        ?= go
BIN       := bin
PKGS      := ./...
STATICCHECK ?= $(shell command -v staticcheck 2>/dev/null || echo $(HOME)/go/bin/staticcheck)
CONFIG    ?= config.yaml

.PHONY: all build run test test-short lint vet fmt bench bench-go bench-quick bench-hotkeys fuzz fuzz-ci fuzz-diff soak clean

all: build

build:
	$(GO) build -o $(BIN)/cacheproxy ./cmd/cacheproxy

# Start the local backends named by config.yaml and the proxy in front of
# them. Ctrl-C stops all of them.
run: build
	./deploy/run-local.sh $(CONFIG)

# The test command CI runs: vet, then every test under the race detector.
test: vet
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

test-short:
	$(GO) test -count=1 -short $(PKGS)

vet:
	$(GO) vet $(PKGS)

fmt:
	gofmt -w .

lint: vet
	@test -z "$$(gofmt -l .)" || (echo "gofmt needed:"; gofmt -l .; exit 1)
	@test -x "$(STATICCHECK)" || $(GO) install honnef.co/go/tools/cmd/staticcheck@v0.8.2
	$(STATICCHECK) $(PKGS)

# Go microbenchmarks next to the hot code.
bench-go:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

# Side-by-side runs (direct vs cacheproxy vs nutcracker, then the hot-key
# shield and the hot-key tier's cost) with the internal/loadgen generator;
# QUICK=1 for the short variant. About 20 minutes in full. See
# docs/benchmarks.md. `build` first, so the proxy measured is this tree's.
# SYSCALLS=1 also counts each proxy's system calls per request (perf stat);
# BASELINE=path/to/other/cacheproxy adds "before" rows against another build.
bench: build bench-go
	$(GO) run ./cmd/benchrun $(if $(QUICK),-quick) $(if $(SYSCALLS),-syscalls) $(if $(BASELINE),-baseline $(BASELINE))

bench-quick: build bench-go
	$(GO) run ./cmd/benchrun -quick

# Only the hot-key rounds (shield off/on over jump and ketama, and the cost
# on a uniform workload); SHIELD_KEYS=1000000 for the 1M-key variant.
SHIELD_KEYS ?= 20000
bench-hotkeys: build
	$(GO) run ./cmd/benchrun -hotkeys -shield-keys $(SHIELD_KEYS) $(if $(QUICK),-quick)

# Fuzz every parser for a short while each (FUZZTIME=30s by default).
FUZZTIME ?= 30s
# deploy/fuzz.sh runs a target again once when it fails only by Go 1.26's
# fuzzing deadline race (no failing input; go.dev/issue/75804).
fuzz:
	@GO=$(GO) ./deploy/fuzz.sh $(FUZZTIME)

# The CI share of fuzzing: every target for FUZZCI_TIME (15 targets: 90s of
# fuzzing plus a build and a corpus replay each; under 3 minutes on an idle
# 2-core machine, docs/testing.md). A plain `go test` already
# replays each target's seed corpus (testdata/fuzz/FuzzX).
FUZZCI_TIME ?= 6s
fuzz-ci:
	$(MAKE) --no-print-directory fuzz FUZZTIME=$(FUZZCI_TIME)

# Long differential fuzz against real servers: the same mutated request
# streams to memcached / redis-server directly and through the proxy must get
# the same bytes back (docs/testing.md). A short run is part of make test.
DIFFTIME ?= 10m
fuzz-diff:
	MCDIFF_DURATION=$(DIFFTIME) $(GO) test -count=1 -v -timeout 0 -run '^TestMcDiffFuzz$$' ./proxy
	RESPDIFF_DURATION=$(DIFFTIME) $(GO) test -count=1 -v -timeout 0 -run '^TestRespDiffFuzz' ./proxy

# Soak: the built proxy under mixed verified load (memcache and Redis pools,
# pipelined and not, multi-gets) with a backend killed and restarted every
# minute, sampling its RSS, goroutines and open fds every 10s; fails on a
# wrong value, an error outside an outage, or growth past the bound
# (docs/testing.md). SOAK=2m for a shorter run; make test runs a 24s one.
SOAK ?= 10m
soak:
	SOAK_DURATION=$(SOAK) $(GO) test -count=1 -v -timeout 0 -run '^TestSoak$$' ./internal/soak

clean:
	rm -rf $(BIN)
