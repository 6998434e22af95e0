# dmsnap build, test and demo entry points. `make test` is what CI runs
# (.ci/run). On a fresh machine (as root) scripts/deps.sh installs the base
# packages; everything else the tiers use (kernels, OpenZFS, LVM2) is
# fetched into .cache/ by tests/vmrun (docs/testing.md).

SHELL       := /bin/bash
GO          ?= go
CACHE       := $(CURDIR)/.cache
BIN         := $(CURDIR)/bin
VMRUN       := $(CACHE)/bin/vmrun
STATICCHECK := $(CACHE)/bin/staticcheck
STATICCHECK_VERSION ?= v0.8.2
# Kernels of the real-kernel tier: bookworm's 6.1 and bookworm-backports' 6.12.
KERNELS     ?= bookworm backports
VM_TIMEOUT  ?= 1800s

# Tools the guest takes from .cache/ (vmrun --tools), never from the host.
VM_TOOLS    ?= lvm2
ZFS_TOOLS   ?= zfs,lvm2
ZFS         ?= 1

.PHONY: all build deps vmrun test test-all test-unit test-vm test-zfs test-tools vm-ready zfs-ready torture demo lint bench bench-compare fuzz clean

all: build

build:
	$(GO) build -o $(BIN)/dmsnap ./cmd/dmsnap

deps:
	bash scripts/deps.sh

vmrun:
	$(GO) build -o $(VMRUN) ./tests/vmrun

# `make test` runs every tier as independent jobs, VM_PAR at a time (one QEMU
# per VM job, each about one core under TCG): lint and the host tests overlap
# the download and module build of test-tools, and the kernel-tier and ZFS
# jobs run longest first, with cmd/dmsnap's suites split into shards
# (scripts/shard.sh) so no single VM decides the wall time.
VM_PAR      ?= $(shell nproc)
CMD_SHARDS  ?= 4
ZFS_SHARDS  ?= 2
shards       = $(shell seq 1 $(1))
# Packages with kernel tests are those with a *_kernel_test.go file; those
# whose kernel tests name DMSNAP_ZFS_TIER (or testutil.RequireZFSTier) run
# whole in the ZFS tier instead.
# cmd/dmsnap is sharded and tests/ drive the VM from the host, so both are
# jobs of their own.
KERNEL_TESTS := $(wildcard */*_kernel_test.go */*/*_kernel_test.go)
dirs_of      = $(filter-out cmd/dmsnap tests/%,$(patsubst %/,%,$(sort $(dir $(1)))))
ZFS_DIRS    := $(call dirs_of,$(shell grep -lE 'DMSNAP_ZFS_TIER|RequireZFSTier' $(KERNEL_TESTS) /dev/null))
KERNEL_DIRS := $(filter-out $(ZFS_DIRS),$(call dirs_of,$(KERNEL_TESTS)))
job          = $(subst /,+,$(1))

VM_JOBS  := $(foreach k,$(KERNELS),$(foreach i,$(call shards,$(CMD_SHARDS)),vm-cmd-$(k)-$(i))) \
	vm-torture $(foreach k,$(KERNELS),vm-loopback-$(k)) \
	$(foreach k,$(KERNELS),$(foreach d,$(KERNEL_DIRS),vm-pkg.$(k).$(call job,$(d)))) vm-runner
ZFS_JOBS := $(foreach i,$(call shards,$(ZFS_SHARDS)),zfs-cmd-$(i)) $(foreach d,$(ZFS_DIRS),zfs-pkg.$(call job,$(d)))

test: deps
	$(MAKE) --no-print-directory -j$(VM_PAR) --output-sync=target test-all

# Kernels and LVM2 first (downloads), then test-tools' module build beside
# lint, the host tests and the first kernel-tier jobs.
test-all: $(foreach k,$(KERNELS),vm-setup-$(k)) test-tools lint test-unit $(ZFS_JOBS) $(VM_JOBS)

# Before the tiers: prepare the tools (a fresh machine downloads and builds
# them here) and prove that the guest runs zfs, zpool and lvm from .cache/.
test-tools: vmrun $(foreach k,$(KERNELS),vm-setup-$(k))
	$(VMRUN) --kernel bookworm --tools $(ZFS_TOOLS) --setup
	DMSNAP_VM_TESTS=1 $(GO) test -count=1 -run 'TestGuestToolsFromCache' ./tests/vmrun/

test-unit:
	$(GO) test -count=1 ./...

# Kernels other than test-tools' are fetched while the module builds.
vm-setup-%: vmrun
	$(VMRUN) --kernel $* --tools $(VM_TOOLS) --setup >/dev/null

vm-ready: build $(foreach k,$(KERNELS),vm-setup-$(k))
zfs-ready: vm-ready test-tools

test-vm: vmrun build
	$(MAKE) --no-print-directory -j$(VM_PAR) --output-sync=target $(VM_JOBS)

# One VM boot per job.
vm-cmd-%: vm-ready
	@set -e; k=$(word 1,$(subst -, ,$*)); i=$(word 2,$(subst -, ,$*)); \
	run=$$(GO=$(GO) bash scripts/shard.sh ./cmd/dmsnap/ $$i $(CMD_SHARDS)); \
	echo "== kernel tier $$k: cmd/dmsnap shard $$i/$(CMD_SHARDS)"; \
	$(GO) test -count=1 -timeout 40m -exec "$(VMRUN) --kernel $$k --tools $(VM_TOOLS) --timeout $(VM_TIMEOUT)" -run "$$run" ./cmd/dmsnap/

# vm-pkg.<kernel>.<dir with / as +>, e.g. vm-pkg.backports.internal+loop
vm-pkg.%: vm-ready
	@set -e; k=$(word 1,$(subst ., ,$*)); p=./$(subst +,/,$(word 2,$(subst ., ,$*)))/; \
	echo "== kernel tier $$k: $$p"; \
	$(GO) test -count=1 -timeout 40m -exec "$(VMRUN) --kernel $$k --tools $(VM_TOOLS) --timeout $(VM_TIMEOUT)" $$p

vm-runner: zfs-ready
	DMSNAP_VM_TESTS=1 $(GO) test -count=1 ./tests/vmrun/

vm-torture: vm-ready
	DMSNAP_VM_TESTS=1 DMSNAP_TORTURE_ITERATIONS=20 $(GO) test -count=1 -timeout 40m -run '^TestTorture$$' ./tests/torture/

vm-loopback-%: vm-ready
	DMSNAP_VM_KERNEL=$* DMSNAP_VM_TESTS=1 $(GO) test -count=1 -timeout 40m ./tests/loopback/

# Real OpenZFS 2.3 (bookworm-backports' userland unpacked under .cache/vm/tools/,
# the module built from zfs-dkms's source for the VM kernel under
# .cache/vm/zfs/<release>-<version>/) in the VM on the 6.1 kernel: the zfs
# package, ingest and replicate against real zfs(8). The first build costs
# ~7 min; see docs/testing.md.
ZFS_EXEC = $(VMRUN) --kernel bookworm --tools $(ZFS_TOOLS) --timeout $(VM_TIMEOUT) --env DMSNAP_ZFS_TIER=1

test-zfs: vmrun build
	$(MAKE) --no-print-directory -j$(VM_PAR) --output-sync=target $(ZFS_JOBS)

zfs-cmd-%: zfs-ready
	@set -e; run=$$(GO=$(GO) bash scripts/shard.sh ./cmd/dmsnap/ $* $(ZFS_SHARDS) ZFS); \
	echo "== ZFS tier: cmd/dmsnap shard $*/$(ZFS_SHARDS)"; \
	$(GO) test -count=1 -timeout 40m -exec "$(ZFS_EXEC)" -run "$$run" -v ./cmd/dmsnap/

zfs-pkg.%: zfs-ready
	$(GO) test -count=1 -timeout 40m -exec "$(ZFS_EXEC)" -v ./$(subst +,/,$*)/

# ZFS=0 skips the ZFS part.
demo: deps build vmrun
	ZFS=$(ZFS) bash scripts/demo-run.sh

lint:
	@test -x $(STATICCHECK) || GOBIN=$(CACHE)/bin $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt: $$out"; exit 1; fi
	$(GO) vet ./...
	$(STATICCHECK) ./...

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

# One VM boot per kernel runs tests/bench's BenchmarkCompare against the
# real bin/dmsnap, LVM2 and the no-snapshot floor, and writes one table of
# ratios to bench-compare-KERNEL.md; on bookworm (the kernel ZFS is built
# for) a second boot with the ZFS tools runs BenchmarkCompareZFS (ingest
# against dd and the physical limit) into bench-compare-bookworm-zfs.md.
# docs/perf.md keeps the latest tables. BENCH_ONLY (a regular expression
# over section names) and BENCH_QUICK=1 (small sizes) are for trying the
# harness out; BENCH_LS=10,100,1000 sets the ls/monitor snapshot counts.
BENCH_KERNELS ?= bookworm backports
BENCH_ONLY    ?=
BENCH_QUICK   ?=
BENCH_LS      ?=
BENCH_ENV      = '--env=DMSNAP_BENCH_ONLY=$(BENCH_ONLY)' --env DMSNAP_BENCH_QUICK=$(BENCH_QUICK) --env DMSNAP_BENCH_LS=$(BENCH_LS)
bench-compare: build vmrun $(foreach k,$(BENCH_KERNELS),vm-setup-$(k))
	@for k in $(BENCH_KERNELS); do \
		$(GO) test -count=1 -v -timeout 60m \
			-exec "$(VMRUN) --kernel $$k --tools $(VM_TOOLS) --smp 2 --mem 2048 --timeout 3000s $(BENCH_ENV) --env DMSNAP_BENCH_OUT=$(CURDIR)/bench-compare-$$k.md" \
			-run '^$$' -bench '^BenchmarkCompare$$' -benchtime 1x ./tests/bench/ || exit 1; \
		if [ "$$k" = bookworm ] && [ "$(ZFS)" = 1 ]; then \
			$(VMRUN) --kernel bookworm --tools $(ZFS_TOOLS) --setup >/dev/null || exit 1; \
			$(GO) test -count=1 -v -timeout 60m \
				-exec "$(VMRUN) --kernel bookworm --tools $(ZFS_TOOLS) --smp 2 --mem 3072 --timeout 3000s --env DMSNAP_ZFS_TIER=1 $(BENCH_ENV) --env DMSNAP_BENCH_OUT=$(CURDIR)/bench-compare-bookworm-zfs.md" \
				-run '^$$' -bench '^BenchmarkCompareZFS$$' -benchtime 1x ./tests/bench/ || exit 1; \
		fi; \
	done

fuzz:
	@for p in ./dm/ ./cow/ ./lvm/ ./zfs/ ./retention/ ./schedule/ ./zfs/sendstream/; do \
		for f in $$($(GO) test -list '^Fuzz' $$p | grep ^Fuzz); do \
			$(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime 30s $$p || exit 1; \
		done; \
	done

clean:
	rm -rf $(BIN)

# The randomized crash torture (tests/torture): 200 iterations, about half
# of them followed by a power-off; make test-vm runs 20.
TORTURE_ITERATIONS ?= 200
torture: vmrun build
	DMSNAP_VM_TESTS=1 DMSNAP_TORTURE_ITERATIONS=$(TORTURE_ITERATIONS) $(GO) test -count=1 -timeout 170m -v -run '^TestTorture$$' ./tests/torture/
