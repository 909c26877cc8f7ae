# ssf: the two set-up commands on a fresh Debian/Ubuntu machine are `make demo` and `make test`.
# Both install what they need when it is missing: runc and busybox-static with apt-get (as root), and pinned Go
# tools into .tools/ with `go install`.

GO          ?= go
BIN         := $(CURDIR)/bin/ssf
TOOLS       := $(CURDIR)/.tools
COSIGN      := $(TOOLS)/cosign
STATICCHECK := $(TOOLS)/staticcheck

COSIGN_VERSION      := v2.6.5
STATICCHECK_VERSION := v0.8.2

APT_PACKAGES := runc busybox-static git

.PHONY: all build demo test unit lint bench deps tools clean conformance

all: build

build:
	$(GO) build -o $(BIN) ./cmd/ssf

# deps installs the system packages ssf's sandbox and tests use, when they are missing.
deps:
	@missing=""; \
	command -v runc >/dev/null || missing="$$missing runc"; \
	{ command -v busybox >/dev/null && ! ldd "$$(command -v busybox)" >/dev/null 2>&1; } || missing="$$missing busybox-static"; \
	command -v git >/dev/null || missing="$$missing git"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "make: missing:$$missing; install them with: sudo apt-get install$$missing" >&2; exit 1; fi; \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

$(COSIGN):
	@echo "installing cosign $(COSIGN_VERSION) into $(TOOLS) (a few minutes the first time)"
	GOBIN=$(TOOLS) GOTOOLCHAIN=local $(GO) install github.com/sigstore/cosign/v2/cmd/cosign@$(COSIGN_VERSION)

$(STATICCHECK):
	GOBIN=$(TOOLS) GOTOOLCHAIN=local $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

tools: $(COSIGN) $(STATICCHECK)

demo: deps build
	SSF=$(BIN) COSIGN=$(COSIGN) ./scripts/demo.sh

lint: $(STATICCHECK)
	@out=$$(gofmt -l cmd internal examples); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(STATICCHECK) ./...
	$(GO) mod tidy -diff

# test runs every test: lint, unit and isolation tests with real runc, and the interop tests with real cosign.
test: deps tools lint conformance
	SSF_REQUIRE_INTEROP=1 SSF_COSIGN=$(COSIGN) $(GO) test -count=1 -timeout 30m ./...

# conformance runs the OCI distribution-spec conformance suite (pinned in the script) against ssf registry serve.
conformance: build
	SSF=$(BIN) GO=$(GO) ./scripts/conformance.sh

bench: deps build
	./scripts/bench.sh

clean:
	rm -rf bin
