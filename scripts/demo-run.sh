#!/usr/bin/env bash
# Runs scripts/demo.sh natively when this host has device-mapper and we are
# root, otherwise inside the test VM (tests/vmrun) on Debian's 6.1 kernel.
# ZFS=1 (the default) shows the ZFS part: in the VM, OpenZFS's userland and
# module come from .cache/ (vmrun --tools zfs), prepared on first use.
# ZFS=0 skips that part.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/bin:$PATH"
zfs=${ZFS:-1}
case $zfs in 0 | 1) ;; *) echo "demo: ZFS=$zfs: want 0 or 1" >&2; exit 2 ;; esac
if [ "$(id -u)" -eq 0 ] && [ -e /dev/mapper/control ]; then
	echo "demo: running natively (this host has device-mapper)" >&2
	DMSNAP_DEMO_ZFS=$([ "$zfs" = 1 ] && echo auto || echo 0) exec bash scripts/demo.sh
fi
echo "demo: this host has no device-mapper; running inside a QEMU VM with Debian's kernel" >&2
vmrun=.cache/bin/vmrun
args=(--kernel bookworm)
if [ "$zfs" = 1 ]; then
	args+=(--tools zfs --mem 2048)
	if ! "$vmrun" "${args[@]}" --cached; then
		echo "demo: first use: preparing OpenZFS for the VM (downloads the userland, kernel headers and zfs-dkms source, ~40 MB, and builds the module: about 7 min on 2 cores, once per kernel)" >&2
		"$vmrun" "${args[@]}" --setup >/dev/null || { echo "demo: preparing OpenZFS failed (the reason is above); retry: make demo, or make demo ZFS=0 to skip the ZFS part" >&2; exit 1; }
	fi
fi
exec "$vmrun" "${args[@]}" --timeout 900s --env DMSNAP_DEMO_ZFS="$zfs" bash scripts/demo.sh
