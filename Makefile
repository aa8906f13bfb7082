# lhpvm — build, run, test. Needs Go, gcc and binutils; Linux x86-64 with
# read/write access to /dev/kvm to run guests.

GO    ?= go
BIN   := bin/lhpvm
# The default experiment of `make run`; override with `make run ARGS="..."`.
ARGS  ?= --scenario default

.PHONY: all build guest run test check-fmt bench fuzz generate clean

all: build

guest:
	$(MAKE) -C guest

build: guest
	$(GO) build -o $(BIN) ./cmd/lhpvm

run: build
	./$(BIN) run $(ARGS)

# Everything the project checks: formatting, vet, generated files current,
# unit tests, end-to-end tests on /dev/kvm (skipped without it unless
# LHPVM_REQUIRE_KVM=1), and a short fuzz of the ELF loader.
test: guest check-fmt
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 15m ./...
	$(GO) test -run '^$$' -fuzz FuzzParseELF -fuzztime 10s ./vmm

check-fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

bench: guest
	$(GO) test -run '^$$' -bench . -benchtime 5x ./tests

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzParseELF -fuzztime 2m ./vmm

generate:
	$(GO) generate ./hypercall

clean:
	$(MAKE) -C guest clean
	rm -rf bin
