# llmux — the two commands a newcomer needs are `make run` and `make test`.
GO        ?= go
BIN       := bin
PKGS      := ./...
FUZZTIME  ?= 15s

.PHONY: all build run test lint unit race fuzz bench clean

all: build

build: ## Build llmux-extproc and the Envoy stand-in into bin/
	$(GO) build -o $(BIN)/llmux-extproc ./cmd/extproc
	$(GO) build -o $(BIN)/envoysim ./test/envoysim/cmd/envoysim

run: build ## Start llmux + Envoy (or the stand-in) + a demo provider, print a working curl
	$(GO) run ./test/devstack

test: lint race ## Everything: formatting, vet, unit, conformance and end-to-end tests under -race

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
	$(GO) test -run '^$$' -bench . -benchmem ./processor/ ./translate/...

clean:
	rm -rf $(BIN)
