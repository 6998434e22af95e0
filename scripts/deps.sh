#!/usr/bin/env bash
# Installs what `make test` and `make demo` need on a fresh Debian machine:
# QEMU and a static busybox for the test VM, cpio/xz for unpacking kernels,
# LVM2 for the kernel tests that follow merges started by lvconvert (the VM
# uses the host's tools), and the Go modules. Idempotent; apt runs only when
# something is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
[ -x /bin/busybox ] && /bin/busybox --list 2>/dev/null | grep -qx insmod || need+=(busybox-static)
command -v cpio >/dev/null || need+=(cpio)
command -v xz >/dev/null || need+=(xz-utils)
command -v zstd >/dev/null || need+=(zstd)
command -v dpkg-deb >/dev/null || need+=(dpkg)
PATH=$PATH:/usr/sbin:/sbin command -v lvm >/dev/null || need+=(lvm2) # sbin: not in a user's PATH
[ -e /usr/share/qemu/qboot.rom ] || need+=(qemu-system-data)

if [ ${#need[@]} -gt 0 ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "deps: missing ${need[*]}; run as root (apt-get install) or install them" >&2
		exit 1
	fi
	echo "deps: installing ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=600 "${need[@]}" >/dev/null
fi
go mod download
