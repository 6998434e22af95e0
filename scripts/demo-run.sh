#!/usr/bin/env bash
# Runs scripts/demo.sh natively when this host has device-mapper and we are
# root, otherwise inside the test VM (tests/vmrun) on Debian's kernel.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/bin:$PATH"
if [ "$(id -u)" -eq 0 ] && [ -e /dev/mapper/control ]; then
	echo "demo: running natively (this host has device-mapper)" >&2
	exec bash scripts/demo.sh
fi
echo "demo: this host has no device-mapper; running inside a QEMU VM with Debian's kernel" >&2
# The ZFS part needs OpenZFS built for the VM kernel (cached after the first
# build, ~6 min); without it the demo skips that part.
kernel=${DMSNAP_VM_KERNEL:-bookworm}
zfs=()
if [ "$kernel" = bookworm ] && mods=$(VMRUN=.cache/bin/vmrun bash scripts/zfs-setup.sh | tail -n1) && [ -s "$mods/zfs.ko" ]; then
	zfs=(--mem 2048 --modules "$mods/spl.ko,$mods/zfs.ko")
else
	echo "demo: OpenZFS for the VM kernel unavailable; the ZFS part will be skipped" >&2
fi
exec .cache/bin/vmrun --kernel "$kernel" --timeout 600s "${zfs[@]}" --env "PATH=$PATH:/usr/sbin:/sbin" bash scripts/demo.sh
