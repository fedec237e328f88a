# llmux — the two commands a newcomer needs are `make run` and `make test`.
GO        ?= go
BIN       := bin
PKGS      := ./...
FUZZTIME  ?= 15s

.PHONY: all build run test lint unit race fuzz bench clean

all: build

# Flags for test/devstack, e.g. DEVSTACK_FLAGS='-port 11000 -grpc 127.0.0.1:50052 -admin 127.0.0.1:9091'
DEVSTACK_FLAGS ?=

build: ## Build llmux-extproc and the Envoy stand-in into bin/
	@echo "==> building $(BIN)/llmux-extproc (./cmd/extproc)"
	@$(GO) build -o $(BIN)/llmux-extproc ./cmd/extproc
	@echo "==> building $(BIN)/envoysim (./test/envoysim/cmd/envoysim)"
	@$(GO) build -o $(BIN)/envoysim ./test/envoysim/cmd/envoysim

run: ## Start llmux + Envoy (or the stand-in) + demo providers, print a working curl
	@echo "==> building the launcher $(BIN)/devstack (./test/devstack; the first build compiles the dependencies and takes a while)"
	@$(GO) build -o $(BIN)/devstack ./test/devstack
	@$(BIN)/devstack -build -llmux $(BIN)/llmux-extproc $(DEVSTACK_FLAGS)

test: lint race ## Everything: formatting, vet, unit, conformance and end-to-end tests under -race
	@command -v envoy >/dev/null 2>&1 || echo "note: no envoy on PATH, so the end-to-end suite ran against the Envoy stand-in (test/envoysim) only; put envoy on PATH to run it against real Envoy (docs/testing.md)"

lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet $(PKGS)

unit:
	$(GO) test $(PKGS)

race:
	$(GO) test -race -count=1 -timeout 10m $(PKGS)

fuzz: ## Run every fuzz target for FUZZTIME each (the corpus under testdata/fuzz is kept)
	@set -e; for pkg in $$($(GO) list ./...); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done

bench: ## Benchmarks whose numbers are written in docs/performance.md
	$(GO) test -run '^$$' -bench . -benchmem ./processor/... ./translate/...

clean:
	rm -rf $(BIN)
