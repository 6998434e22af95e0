# dmsnap build, test and demo entry points. `make test` is what CI runs
# (.ci/run); it installs what it needs on a fresh machine (as root).

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
KERNEL_PKGS ?= ./dm/ ./internal/sys/ ./internal/loop/ ./cow/ ./merge/ ./cmd/dmsnap/

.PHONY: all build deps vmrun test test-unit test-vm test-zfs demo lint bench fuzz clean

all: build

build:
	$(GO) build -o $(BIN)/dmsnap ./cmd/dmsnap

deps:
	bash scripts/deps.sh

vmrun:
	$(GO) build -o $(VMRUN) ./tests/vmrun

test: deps lint test-unit test-vm test-zfs

test-unit:
	$(GO) test -count=1 ./...

# One VM boot per package and kernel; `go test -p 2` runs two at once.
test-vm: vmrun build
	@set -e; for k in $(KERNELS); do \
		echo "== kernel tier: $$k"; \
		$(VMRUN) --kernel $$k --setup; \
		$(GO) test -count=1 -timeout 40m -exec "$(VMRUN) --kernel $$k --timeout $(VM_TIMEOUT)" $(KERNEL_PKGS); \
	done
	DMSNAP_VM_TESTS=1 $(GO) test -count=1 ./tests/vmrun/
	@set -e; for k in $(KERNELS); do \
		DMSNAP_VM_KERNEL=$$k DMSNAP_VM_TESTS=1 $(GO) test -count=1 -timeout 40m ./tests/loopback/; \
	done

# Real OpenZFS 2.3.2 (bookworm-backports, dkms-built for the VM kernel, cached
# under .cache/zfs/ keyed by kernel release and zfs version) in the VM on the
# 6.1 kernel: the zfs package, ingest and replicate against real zfs(8). The
# first build costs ~6-7 min; see docs/zfs.md, "Real-ZFS tier".
test-zfs: vmrun
	@set -e; mods=$$(VMRUN=$(VMRUN) bash scripts/zfs-setup.sh | tail -n1); \
	$(GO) test -count=1 -timeout 40m -exec "$(VMRUN) --kernel bookworm --timeout $(VM_TIMEOUT) --env DMSNAP_ZFS_TIER=1 --modules $$mods/spl.ko,$$mods/zfs.ko" -run ZFS -v ./zfs/ ./cmd/dmsnap/

demo: deps build vmrun
	bash scripts/demo-run.sh

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
