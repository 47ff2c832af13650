# devvm — see README.md.
#   make install   build and install the devvm command
#   make test      set up everything the tests need, then run all three tiers
GO      ?= go
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

.PHONY: all build install test test-setup check unit e2e guix bench fuzz clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/devvm ./cmd/devvm

install:
	$(GO) install -ldflags "$(LDFLAGS)" ./cmd/devvm

# Everything CI runs (.ci/run calls this).
test: test-setup check unit e2e guix

test-setup:
	bash scripts/test-setup.sh

# Formatting and vet.
check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags e2e ./tests/...
	$(GO) vet -tags guixtier ./tests/guix/
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

# Tier 1: unit tests, no VM.
unit:
	$(GO) test -count=1 ./...

# Tier 2: the real tiny guest in real QEMU, driven through devvm's commands.
e2e:
	$(GO) test -tags e2e -count=1 -timeout 30m -v ./tests/e2e/ ./tests/microvm/

# Tier 3: real guix 1.5.0 (Debian sid chroot) evaluates every shipped template.
guix:
	$(GO) test -tags guixtier -count=1 -timeout 30m -v ./tests/guix/

# Benchmarks (performance targets live here, not in tests).
bench:
	$(GO) test -run '^$$' -bench . -benchtime 20x ./launcher/... ./tests/bench/

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzParse -fuzztime 60s ./launcher/vmfile/

clean:
	rm -rf bin
