# ssf: the two set-up commands on a fresh Debian/Ubuntu machine are `make demo` and `make test`.
# Both install what they need when it is missing: runc, crun, busybox-static, git, e2fsprogs and docker-registry (Debian's
# distribution 2.8, the second registry of the interop tests) with apt-get (as root), and pinned Go tools into
# .tools/ with `go install`.

GO          ?= go
BIN         := $(CURDIR)/bin/ssf
TOOLS       := $(CURDIR)/.tools
COSIGN      := $(TOOLS)/cosign
STATICCHECK := $(TOOLS)/staticcheck
CRANE       := $(TOOLS)/crane
ORAS        := $(TOOLS)/oras
AJV         := $(TOOLS)/ajv-cli/node_modules/.bin/ajv

COSIGN_VERSION      := v2.6.5
# cosign v3 beside v2 (the interop tests run both), kept under its version's name like rekor-cli.
COSIGN_V3_VERSION   := v3.1.2
COSIGN_V3           := $(TOOLS)/cosign-$(COSIGN_V3_VERSION)
STATICCHECK_VERSION := v0.8.2
CRANE_VERSION       := v0.22.1
ORAS_VERSION        := v1.3.6
REKOR_CLI_VERSION   := v1.5.3
REKOR_CLI           := $(TOOLS)/rekor-cli-$(REKOR_CLI_VERSION)
# A real kube-apiserver and etcd for the admission end-to-end tests (internal/kubetest pins the same versions),
# built from the Go module proxy by scripts/kube-tools.sh: there are no release downloads from here.
KUBE_APISERVER_VERSION := v1.37.2
KUBE_APISERVER         := $(TOOLS)/kube-apiserver-$(KUBE_APISERVER_VERSION)
ETCD_VERSION           := v3.6.16
ETCD                   := $(TOOLS)/etcd-$(ETCD_VERSION)
# ajv-cli validates the SBOMs against the JSON schemas of their formats (no Go validator is served here).
AJV_CLI_VERSION     := 5.0.0
AJV_VERSION         := 8.20.0
AJV_FORMATS_VERSION := 3.0.1

# The environment the interop tests read; with SSF_REQUIRE_INTEROP=1 a missing tool fails them instead of skipping.
TEST_ENV := SSF_REQUIRE_INTEROP=1 SSF_COSIGN=$(COSIGN) SSF_COSIGN_V3=$(COSIGN_V3) SSF_CRANE=$(CRANE) SSF_ORAS=$(ORAS) SSF_SBOM_VALIDATOR=$(AJV) SSF_REKOR_CLI=$(REKOR_CLI) \
	SSF_DOCKER_REGISTRY=/usr/bin/docker-registry SSF_KUBE_APISERVER=$(KUBE_APISERVER) SSF_ETCD=$(ETCD)

.PHONY: all build demo test lint bench deps test-deps tools clean conformance

all: build

build:
	$(GO) build -o $(BIN) ./cmd/ssf

# deps installs the system packages ssf's sandbox and tests use, when they are missing.
deps:
	@missing=""; \
	command -v runc >/dev/null || missing="$$missing runc"; \
	command -v crun >/dev/null || missing="$$missing crun"; \
	{ command -v busybox >/dev/null && ! ldd "$$(command -v busybox)" >/dev/null 2>&1; } || missing="$$missing busybox-static"; \
	command -v git >/dev/null || missing="$$missing git"; \
	command -v mkfs.ext4 >/dev/null || missing="$$missing e2fsprogs"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "make: missing:$$missing; install them with: sudo apt-get install$$missing" >&2; exit 1; fi; \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

# test-deps adds Debian's docker-registry, the second registry of the interop tests and benchmarks (the tests
# start their own instances on loopback; the package's system service, which listens on :5000 on every
# interface, is stopped and disabled), and Node.js with npm (the Node builder of the npm tests, and ajv-cli).
test-deps: deps
	@missing=""; \
	command -v node >/dev/null || missing="$$missing nodejs"; \
	command -v npm >/dev/null || missing="$$missing npm"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "make: missing:$$missing; install them with: sudo apt-get install$$missing" >&2; exit 1; fi; \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
	@if ! command -v docker-registry >/dev/null; then \
	  if [ "$$(id -u)" != 0 ]; then echo "make: missing: docker-registry; install it with: sudo apt-get install docker-registry" >&2; exit 1; fi; \
	  echo "installing: docker-registry"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-registry >/dev/null; \
	  systemctl disable --now docker-registry >/dev/null 2>&1 || true; \
	fi

$(COSIGN):
	@echo "installing cosign $(COSIGN_VERSION) into $(TOOLS) (a few minutes the first time)"
	GOBIN=$(TOOLS) GOTOOLCHAIN=local $(GO) install github.com/sigstore/cosign/v2/cmd/cosign@$(COSIGN_VERSION)

$(COSIGN_V3):
	@echo "installing cosign $(COSIGN_V3_VERSION) into $(TOOLS) (about 4 minutes the first time)"
	GOBIN=$(TOOLS)/cosign-v3.tmp GOTOOLCHAIN=local $(GO) install github.com/sigstore/cosign/v3/cmd/cosign@$(COSIGN_V3_VERSION)
	mv $(TOOLS)/cosign-v3.tmp/cosign $@ && rmdir $(TOOLS)/cosign-v3.tmp

$(STATICCHECK):
	GOBIN=$(TOOLS) GOTOOLCHAIN=local $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

$(CRANE):
	GOBIN=$(TOOLS) GOTOOLCHAIN=local $(GO) install github.com/google/go-containerregistry/cmd/crane@$(CRANE_VERSION)

$(ORAS):
	GOBIN=$(TOOLS) GOTOOLCHAIN=local $(GO) install oras.land/oras/cmd/oras@$(ORAS_VERSION)

# rekor-cli is kept under its version's name, so a new pin installs again (go install names it rekor-cli).
$(REKOR_CLI):
	@echo "installing rekor-cli $(REKOR_CLI_VERSION) into $(TOOLS) (a few minutes the first time)"
	GOBIN=$(TOOLS)/rekor-cli.tmp GOTOOLCHAIN=local $(GO) install github.com/sigstore/rekor/cmd/rekor-cli@$(REKOR_CLI_VERSION)
	mv $(TOOLS)/rekor-cli.tmp/rekor-cli $@ && rmdir $(TOOLS)/rekor-cli.tmp

$(AJV):
	@if ! command -v npm >/dev/null; then \
	  if [ "$$(id -u)" != 0 ]; then echo "make: missing: npm; install it with: sudo apt-get install npm" >&2; exit 1; fi; \
	  echo "installing: npm"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null; \
	fi
	npm install --prefix $(TOOLS)/ajv-cli --no-audit --no-fund --loglevel=error \
	  ajv-cli@$(AJV_CLI_VERSION) ajv@$(AJV_VERSION) ajv-formats@$(AJV_FORMATS_VERSION)

$(KUBE_APISERVER):
	@echo "building kube-apiserver $(KUBE_APISERVER_VERSION) into $(TOOLS) (the first time about 13 CPU-minutes and 2.4 GB: 7 minutes on 2 idle cores; seconds from the Go build cache)"
	GO=$(GO) ./scripts/kube-tools.sh kube-apiserver $(KUBE_APISERVER_VERSION) $@

$(ETCD):
	@echo "building etcd $(ETCD_VERSION) into $(TOOLS) (a minute or two the first time)"
	GO=$(GO) ./scripts/kube-tools.sh etcd $(ETCD_VERSION) $@

tools: $(COSIGN) $(COSIGN_V3) $(STATICCHECK) $(CRANE) $(ORAS) $(REKOR_CLI) $(AJV) $(KUBE_APISERVER) $(ETCD)

# demo installs cosign first so stock cosign checks the demo's bundles too; if it cannot (no module proxy), the
# demo still runs and says it skipped those checks.
demo: deps build
	@$(MAKE) -s --no-print-directory $(COSIGN) || echo "make: could not install cosign into $(TOOLS); the demo skips the stock cosign checks" >&2
	SSF=$(BIN) COSIGN=$(COSIGN) ./scripts/demo.sh

lint: $(STATICCHECK)
	@out=$$(gofmt -l cmd internal examples); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(STATICCHECK) ./...
	$(GO) mod tidy -diff

# test runs every test: lint, the registry conformance suite, unit and isolation tests with real runc, and the
# interop tests with real cosign, crane, oras and docker-registry.
test: test-deps tools lint conformance
	$(TEST_ENV) $(GO) test -count=1 -timeout 30m ./...

# conformance runs the OCI distribution-spec conformance suite (pinned in the script) against ssf registry serve.
conformance: build
	SSF=$(BIN) GO=$(GO) ./scripts/conformance.sh

bench: test-deps tools build
	./scripts/bench.sh
	./scripts/bench-registry.sh
	$(GO) test ./internal/deps/ -run '^$$' -bench 'Gomod' -benchtime 3x
	$(GO) test ./internal/tlog/ -run '^$$' -bench 'Append/submitters=(64|512|2048)$$' -benchtime 20000x
	$(GO) test ./internal/tlog/ -run '^$$' -bench 'InclusionProof' -benchtime 5000x
	$(GO) test ./internal/factory/ -run '^$$' -bench 'TaskIdentity' -benchtime 200x
	$(GO) test ./internal/policy/ -run '^$$' -bench 'Evaluate' -benchtime 2s

clean:
	rm -rf bin
