#!/usr/bin/env bash
# Installs the base packages that `make test` and `make demo` need on a fresh
# Debian machine, from the machine's default apt sources, and the Go modules.
# This is the only change the test tiers make to the host system; everything
# else (kernels, OpenZFS userland and module, LVM2) is fetched into .cache/ by
# tests/vmrun with a private apt configuration (docs/testing.md).
#
#   qemu-system-x86, qemu-system-data  the test VM and its qboot ROM
#   busybox-static                      the VM's /init
#   cpio, xz-utils, zstd                unpacking kernel packages and modules
#   gcc, make, libc6-dev                building the OpenZFS module (configure
#                                       compiles probe programs)
#
# Idempotent; apt runs only when something is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() {
	echo "deps: $1" >&2
	[ -n "${2:-}" ] && echo "deps: retry with: $2" >&2
	exit 1
}

need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
[ -e /usr/share/qemu/qboot.rom ] || need+=(qemu-system-data)
{ [ -x /bin/busybox ] && /bin/busybox --list 2>/dev/null | grep -qx insmod; } || need+=(busybox-static)
command -v cpio >/dev/null || need+=(cpio)
command -v xz >/dev/null || need+=(xz-utils)
command -v zstd >/dev/null || need+=(zstd)
command -v dpkg-deb >/dev/null || need+=(dpkg)
command -v gcc >/dev/null || need+=(gcc)
command -v make >/dev/null || need+=(make)
[ -e /usr/include/stdio.h ] || need+=(libc6-dev)

if [ ${#need[@]} -gt 0 ]; then
	[ "$(id -u)" -eq 0 ] || fail "missing base packages: ${need[*]}; run as root" "sudo apt-get install --no-install-recommends ${need[*]}"
	echo "deps: installing base packages: ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq -o DPkg::Lock::Timeout=600 ||
		fail "apt-get update failed (no network or a broken sources entry?)" "apt-get update"
	apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=600 "${need[@]}" >/dev/null ||
		fail "apt-get install ${need[*]} failed" "apt-get install --no-install-recommends ${need[*]}"
fi
go mod download || fail "go mod download failed (module proxy unreachable?)" "go mod download"
