#!/usr/bin/env bash
# A walk-through of dmsnap's pools and volumes. Runs as root on a machine
# with device-mapper: inside the test VM (scripts/demo-run.sh does that)
# or natively. Every step must succeed (set -euo pipefail).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
DMSNAP=${DMSNAP:-$REPO/bin/dmsnap}
DEMO=$REPO/.cache/demo
# Keep the demo's state file and locks apart from the machine's.
export DMSNAP_CONFIG_DIR=$DEMO/etc
export DMSNAP_LOCK_DIR=$DEMO/run
unset DMSNAP_POOL

step() { echo; echo "== $*"; }
run() { echo "\$ dmsnap $*"; "$DMSNAP" "$@"; }

cleanup() {
	"$DMSNAP" deactivate demo >/dev/null 2>&1 || true
	rm -rf "$DEMO"
}
trap cleanup EXIT
rm -rf "$DEMO"

step "1. Create the default pool 'demo' on a 2 GiB sparse image file (attached through a loop device)"
run pool create demo --file "$DEMO/pool.img" --size 2G --default
run pool ls

step "2. Carve a 256 MiB volume 'base' from it; dmsnap activates it at once"
run lv create demo/base --size 256M

step "3. Write 64 MiB of data through /dev/mapper/demo-base and checksum it"
dd if=/dev/urandom of=/dev/mapper/demo-base bs=1M count=64 conv=fsync status=none
before=$(head -c 64M /dev/mapper/demo-base | sha256sum)
echo "sha256 $before"

step "4. What dmsnap and the kernel see"
run lv ls
run dm ls
run dm status demo-base

step "5. Deactivate (devices removed, loop device detached) and activate again from the metadata on the image"
run deactivate demo
run activate demo
after=$(head -c 64M /dev/mapper/demo-base | sha256sum)
echo "sha256 $after"
[ "$before" = "$after" ] || { echo "data changed across deactivate/activate" >&2; exit 1; }
echo "data intact"

step "6. Activation is idempotent: a second run keeps everything"
run activate demo --dry-run

step "7. Take a persistent snapshot of base: the card's command, on the default pool"
run --verbose create base snap --cow 100M --persistent
run dm ls

step "8. Overwrite the first 16 MiB of the origin; the snapshot keeps the old data"
dd if=/dev/urandom of=/dev/mapper/demo-base bs=1M count=16 conv=fsync status=none
origin=$(head -c 64M /dev/mapper/demo-base | sha256sum)
snap=$(head -c 64M /dev/mapper/demo-snap | sha256sum)
echo "origin sha256 $origin"
echo "snap   sha256 $snap"
[ "$snap" = "$before" ] || { echo "the snapshot changed" >&2; exit 1; }
[ "$origin" != "$before" ] || { echo "the origin did not change" >&2; exit 1; }
echo "the snapshot still holds the data as it was at 'create'"

step "9. List snapshots (like lvs) and show one with the kernel's raw sector counts"
run ls
run status snap

step "10. Merge the snapshot back: the kernel's snapshot-merge rolls the origin back to it"
run merge --watch snap
merged=$(head -c 64M /dev/mapper/demo-base | sha256sum)
echo "origin sha256 $merged"
[ "$merged" = "$before" ] || { echo "the origin is not back at the snapshot's content" >&2; exit 1; }
echo "the origin is back at the snapshot's content; the snapshot and its COW are gone"
run dm status demo-base
run pool show demo

# loop_zpool NAME: a zpool on a loop device over a 1 GiB sparse file (the
# VM's root is read-only and file vdevs do not work there).
loop_zpool() {
	local img=$DEMO/$1.img dev
	truncate -s 1G "$img"
	dev=$(losetup -f --show "$img")
	ZDEVS+=("$dev")
	zpool create -f -o cachefile=none -m none "$1" "$dev"
}

zfs_part() {
	step "11. ZFS: a zpool on a loop device, then ingest the volume into a zvol (full, then changed chunks only)"
	loop_zpool demozp
	run ingest base demozp/base --cow 64M
	dd if=/dev/urandom of=/dev/mapper/demo-base bs=4k count=64 seek=1000 conv=fsync status=none
	echo "(64 blocks of 4 KiB rewritten in the origin)"
	run ingest base demozp/base --cow 64M
	run zfs ls demozp/base
	local zv
	zv=$(for d in /dev/zd*; do [ "$(/lib/udev/zvol_id "$d" 2>/dev/null)" = demozp/base ] && echo "$d"; done | head -1)
	local vol cursor
	vol=$(head -c 256M "$zv" | sha256sum)
	cursor=$(head -c 256M /dev/mapper/demo-base--ingest--2 | sha256sum)
	echo "zvol sha256   $vol"
	echo "cursor sha256 $cursor"
	[ "$vol" = "$cursor" ] || { echo "the zvol differs from the frozen snapshot it was ingested from" >&2; exit 1; }
	echo "the zvol holds exactly the frozen snapshot"
	run ls

	step "12. ZFS: replicate the zvol's history to a second zpool (full, then incremental from the common GUID)"
	loop_zpool demobk
	run replicate demozp/base demobk/base --dry-run
	run replicate demozp/base demobk/base
	dd if=/dev/urandom of=/dev/mapper/demo-base bs=4k count=64 seek=5000 conv=fsync status=none
	run ingest base demozp/base --cow 64M
	run replicate demozp/base demobk/base
	run zfs ls demobk/base
	run zfs prune demozp/base --keep 1 --dry-run
}

ZDEVS=()
zfs_cleanup() {
	zpool destroy -f demozp >/dev/null 2>&1 || true
	zpool destroy -f demobk >/dev/null 2>&1 || true
	for d in "${ZDEVS[@]}"; do losetup -d "$d" 2>/dev/null || true; done
}
if [ -e /dev/zfs ] && command -v zpool >/dev/null; then
	trap 'zfs_cleanup; cleanup' EXIT
	zfs_part
	zfs_cleanup
	run remove demo/base-ingest-3
else
	step "11. ZFS: skipped (no zfs module loaded; scripts/zfs-setup.sh builds it for the VM)"
fi

step "13. Clean up: remove the volume and the pool"
run lv remove demo/base
run pool remove demo
echo
echo "demo finished"
