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
# Packages whose tests touch the kernel; the VM runs only these.
KERNEL_PKGS ?= ./dm/ ./internal/sys/ ./internal/loop/ ./cow/ ./merge/ ./lvm2/ ./cmd/dmsnap/

# Tools the guest takes from .cache/ (vmrun --tools), never from the host.
VM_TOOLS    ?= lvm2
ZFS_TOOLS   ?= zfs,lvm2
ZFS         ?= 1

.PHONY: all build deps vmrun test test-unit test-vm test-zfs test-tools torture demo lint bench fuzz clean

all: build

build:
	$(GO) build -o $(BIN)/dmsnap ./cmd/dmsnap

deps:
	bash scripts/deps.sh

vmrun:
	$(GO) build -o $(VMRUN) ./tests/vmrun

test: deps lint test-unit test-tools test-vm test-zfs

# Before the tiers: prepare the tools (a fresh machine downloads and builds
# them here) and prove that the guest runs zfs, zpool and lvm from .cache/.
test-tools: vmrun
	$(VMRUN) --kernel bookworm --tools $(ZFS_TOOLS) --setup
	DMSNAP_VM_TESTS=1 $(GO) test -count=1 -run 'TestGuestToolsFromCache' ./tests/vmrun/

test-unit:
	$(GO) test -count=1 ./...

# One VM boot per package and kernel; `go test -p 2` runs two at once.
test-vm: vmrun build
	@set -e; for k in $(KERNELS); do \
		echo "== kernel tier: $$k"; \
		$(VMRUN) --kernel $$k --tools $(VM_TOOLS) --setup >/dev/null; \
		$(GO) test -count=1 -timeout 40m -exec "$(VMRUN) --kernel $$k --tools $(VM_TOOLS) --timeout $(VM_TIMEOUT)" $(KERNEL_PKGS); \
	done
	DMSNAP_VM_TESTS=1 $(GO) test -count=1 ./tests/vmrun/
	DMSNAP_VM_TESTS=1 DMSNAP_TORTURE_ITERATIONS=20 $(GO) test -count=1 -timeout 40m -run '^TestTorture$$' ./tests/torture/
	@set -e; for k in $(KERNELS); do \
		DMSNAP_VM_KERNEL=$$k DMSNAP_VM_TESTS=1 $(GO) test -count=1 -timeout 40m ./tests/loopback/; \
	done

# Real OpenZFS 2.3 (bookworm-backports' userland unpacked under .cache/vm/tools/,
# the module built from zfs-dkms's source for the VM kernel under
# .cache/vm/zfs/<release>-<version>/) in the VM on the 6.1 kernel: the zfs
# package, ingest and replicate against real zfs(8). The first build costs
# ~7 min; see docs/testing.md.
test-zfs: vmrun
	$(VMRUN) --kernel bookworm --tools $(ZFS_TOOLS) --setup >/dev/null
	$(GO) test -count=1 -timeout 40m -exec "$(VMRUN) --kernel bookworm --tools $(ZFS_TOOLS) --timeout $(VM_TIMEOUT) --env DMSNAP_ZFS_TIER=1" -run ZFS -v ./zfs/ ./cmd/dmsnap/

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

fuzz:
	@for p in ./dm/ ./cow/ ./lvm/ ./zfs/; do \
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
