# lhpvm — build, run, test. Needs Go, gcc and binutils; Linux x86-64 where
# /dev/kvm works (the kvm backend) or ptrace is allowed (the ptrace backend).

GO    ?= go
# pipefail: a test run piped through its summary still fails the target.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -ec
BIN   := bin/lhpvm
# The default experiment of `make run`; override with `make run ARGS="..."`.
ARGS  ?= --scenario default

.PHONY: all build guest stub run test test-slurm check-tree check-generated check-scripts check-fresh check-viewers test-quick test-busy test-kvm check-fmt backends bench fuzz soak generate pictures model reproduce clean

all: build

guest:
	$(MAKE) -C guest

# The ptrace backend's stub process, built like the guest image (never committed).
stub:
	$(MAKE) -C internal/ptrace/stub

# The commit 'lhpvm version' and the experiment metadata report.
COMMIT := $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)$(shell git diff --quiet HEAD 2>/dev/null || echo -modified)

build: guest stub
	$(GO) build -ldflags "-X main.commit=$(COMMIT)" -o $(BIN) ./cmd/lhpvm

run: build
	./$(BIN) run $(ARGS)

# Everything the project checks: formatting, vet, generated files current,
# the guest's locks on the host with pthreads (plain and under
# ThreadSanitizer), the pv-qspinlock model check, unit tests, end-to-end
# tests on every backend, all of it again under the race detector, and
# every fuzz target for a few seconds (exec counts printed). The kvm
# backend's tests run natively where /dev/kvm works, else in the emulated
# runner (tests/kvmrunner: real KVM inside QEMU TCG, set up from Debian's
# packages); tests/gotest.sh says which, and how many subtests ran on each
# backend. A backend that cannot run is skipped, unless
# LHPVM_REQUIRE_BACKENDS names it.
test: check-scripts check-generated build check-fmt check-tree backends
	$(GO) vet ./...
	tests/need.sh tsan=libtsan2
	$(MAKE) -C guest/hosttest check
	$(MAKE) model
	GO=$(GO) BIN=$(BIN) tests/gotest.sh
	@echo "fuzzing each target briefly (make fuzz: $(FUZZTIME) each):"
	@for t in $(FUZZ_TARGETS); do GO=$(GO) BIN=$(BIN) tests/fuzz.sh $$t 5s; done

# The quick part of make test: the host lock harness and every test on
# every backend, without the -race passes, the model check or fuzzing.
test-quick: build backends
	tests/need.sh tsan=libtsan2
	$(MAKE) -C guest/hosttest check
	GO=$(GO) BIN=$(BIN) LHPVM_QUICK=1 tests/gotest.sh

# make test (or QUICK=1: make test-quick) while a CPU hog keeps one CPU
# busy throughout, as on a shared CI runner: no test may need a quiet host.
test-busy: build
	tests/busy.sh $(MAKE) $(if $(QUICK),test-quick,test)

# A trace opened in catapult's trace viewer (Go's toolchain ships it),
# offline in headless Chromium (Debian's package, installed when missing):
# what the viewer shows must be what the run did (TestTraceInViewer; make
# test runs it too where chromium is installed, and CI requires it).
check-viewers: build
	tests/need.sh chromium=chromium
	LHPVM_REQUIRE_VIEWER=1 $(GO) test -count=1 -run '^TestTraceInViewer$$' ./tests

# The kvm suite in the emulated runner only (plain and -race), whatever
# this host has: real KVM (kvm_amd) inside QEMU TCG with SVM.
test-kvm: build
	tests/kvmrunner/deps.sh
	$(GO) run ./tests/kvmrunner test | $(GO) run ./internal/testsummary
	$(GO) run ./tests/kvmrunner -race test | $(GO) run ./internal/testsummary

# The pv-qspinlock's WAIT/KICK, slow-flag and hash protocol, model-checked
# exhaustively with SPIN for 2-3 vCPUs under every knob combination, and two
# mutations it must catch (needs the Debian package spin).
model:
	tests/need.sh spin=spin
	guest/model/check.sh

# Everything that parses what a user or a guest hands lhpvm, and the whole
# VMM under guests made of random ring-3 code (FuzzGuestCode: every backend
# this host has, each input a VM).
FUZZ_TARGETS = ./vmm:FuzzParseELF ./vmm:FuzzHypercalls ./internal/scenario:FuzzParse \
	./sched:FuzzCPUList ./internal/runconfig:FuzzParseSize ./internal/ptrace:FuzzDecodeStop \
	./tests:FuzzGuestCode
FUZZTIME ?= 1m

# Which backends this host has: the end-to-end tests run on those.
backends: build
	@echo "end-to-end tests run on every available backend; the others skip unless LHPVM_REQUIRE_BACKENDS=$${LHPVM_REQUIRE_BACKENDS:-} names them:"
	@./$(BIN) backends

# A soak, with a CPU hog on throughout (tests/busy.sh): 1000 random runs
# (lock, policy, vCPU count, slice, length; 500 per backend, kvm in the
# emulated runner where the host has no textbook KVM) in one process, each
# self-checked, with its fds, threads, child processes and RSS at the start
# and the end (TestSoak); then the pv locks' WAIT/KICK paths through the
# CLI: every contended acquisition through the slow path, several
# policies, no lost wakeup. pvqspin runs twice: as Linux builds it, and
# without lock stealing, where every contended hand-over is a WAIT and a
# KICK. SOAK_RUNS sets the runs per backend.
SOAK_RUNS ?= 500
soak: build
	tests/busy.sh $(GO) test -count=1 -v -run '^TestSoak$$' -timeout 60m ./tests -soak.runs $(SOAK_RUNS) | grep -E '^(=== RUN|---|ok|FAIL|PASS)|soak_test|busy:'
	@if ! ./$(BIN) backends | grep -q '^kvm  *available.*(kvm_\(intel\|amd\))'; then \
		tests/kvmrunner/deps.sh && tests/busy.sh $(GO) run ./tests/kvmrunner -run '^TestSoak$$' test -- -soak.runs=$(SOAK_RUNS) | \
		$(GO) run ./internal/testsummary -v; fi
	for lock in pvticket pvqspin "pvqspin --pv-steal off --spin-threshold-head 1"; do \
		for pol in host rr rr+pv monitor+pv; do \
		./$(BIN) run --workload lock --lock $$lock --vcpus 8 --spin-threshold 1 --sched $$pol \
			--duration 10s --quiet || exit 1; done; done

# Nothing built is committed but the two small generated files that the Go
# build embeds (make check-generated): no other executable, and no file over
# 1 MB.
GENERATED := guest/prebuilt/image/lhpvm-guest.elf internal/ptrace/stub/bin/lhpvm-stub
check-tree:
	@bad=$$(git ls-files -z | while IFS= read -r -d '' f; do \
		case " $(GENERATED) " in *" $$f "*) continue;; esac; \
		if [ -f "$$f" ] && { [ "$$(head -c4 "$$f" | od -An -c | tr -d ' ')" = "177ELF" ] || [ $$(stat -c %s "$$f") -gt 1000000 ]; }; then echo "$$f"; fi; \
	done); \
	if [ -n "$$bad" ]; then echo "built or oversized files are committed (make check-tree):"; echo "$$bad"; exit 1; fi

# Every tracked shell script parses (bash -n) and passes shellcheck at error
# severity: an install branch that CI never takes is still code.
SCRIPTS = $(shell git ls-files '*.sh' '*.sbatch' .ci/run 2>/dev/null)
check-scripts:
	@for f in $(SCRIPTS); do bash -n "$$f" || { echo "$$f does not parse (bash -n)" >&2; exit 1; }; done
	@tests/need.sh shellcheck=shellcheck
	shellcheck -S error $(SCRIPTS)

# The README's set-up paths (make run, every installer, the kvm runner's
# first stage, the lock harness, a short test subset) in a minimal Debian 12
# root where nothing was installed before: tests/fresh/check.sh.
check-fresh:
	tests/fresh/check.sh

# A real single-node Slurm (munge, slurmctld, slurmd from Debian, installed
# when missing) runs a 4-task job array of a short sweep through
# deploy/slurm/run.sh and checks the merge against the unsharded plan:
# tests/slurm/check.sh. Needs root; not part of make test.
test-slurm: build
	tests/slurm/check.sh $(BIN)

check-fmt:
	@out=$$(gofmt -l $$(git ls-files --cached --others --exclude-standard '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# Benchmarks on every backend this host has; kvm in the emulated runner
# where there is no /dev/kvm, its figures labelled as functional only.
bench: build
	$(GO) test -run '^$$' -bench . -benchtime 5x ./tests
	@if ! ./$(BIN) backends | grep -q '^kvm  *available'; then \
		tests/kvmrunner/deps.sh && $(GO) run ./tests/kvmrunner bench; fi

# The slides' timelines, drawn from real runs (README: "See LHP happen").
pictures: build
	mkdir -p docs
	./$(BIN) run --scenario slide8-lhp-two-vms --duration 1s --quiet --timeline docs/slide8.png
	./$(BIN) run --scenario slide11-coscheduling --duration 1s --quiet --timeline docs/slide11.png
	./$(BIN) run --scenario slide12-fragmentation --duration 1s --quiet --timeline docs/slide12.png
	LHPVM_PICTURE=$(CURDIR)/docs/trace-host.png $(GO) test ./tests -run '^TestTraceJoinInViewer$$' -count=1

# The published results of docs/literature.md, each measured again (under
# 5 minutes each) and its numbers rewritten there between the preset's
# markers; the results go to build/reproduce/PRESET/PART.
PRESETS := vee13-pticket pv-ticket pvqspin-steal kvm-boost coscheduling
reproduce: build
	@mkdir -p build/reproduce
	@for p in $(PRESETS); do \
		echo "== $$p"; \
		./$(BIN) experiment --preset $$p --out build/reproduce/$$p --force --doc docs/literature.md > build/reproduce-$$p.txt || exit 1; \
	done
	@echo "docs/literature.md rewritten; the full tables are in build/reproduce-*.txt"

fuzz:
	@for t in $(FUZZ_TARGETS); do GO=$(GO) BIN=$(BIN) tests/fuzz.sh $$t $(FUZZTIME); done

# The generated files that are committed: the guest's ABI header (from
# package hypercall), the guest image and the ptrace stub (each rebuilt only
# when its sources changed). Same as go generate ./...
generate:
	$(GO) generate ./hypercall
	$(MAKE) -C guest
	$(MAKE) -C internal/ptrace/stub

# Fails when a committed generated file is stale, naming the command that
# fixes it: make test runs it before it builds anything.
check-generated:
	@$(MAKE) -s -C guest check
	@$(MAKE) -s -C internal/ptrace/stub check

clean:
	$(MAKE) -C guest clean
	$(MAKE) -C internal/ptrace/stub clean
	$(MAKE) -C guest/hosttest clean
	rm -rf bin build
