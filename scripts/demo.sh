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
# verified NOTE: one line of the closing summary, for a check that passed.
VERIFIED=()
verified() { echo "$*"; VERIFIED+=("$*"); }
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
verified "deactivate + activate from the on-disk metadata kept the volume's data (sha256 equal)"

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
verified "the snapshot holds the data as it was at 'create' while the origin changed (sha256 equal)"

step "9. List snapshots (like lvs) and show one with the kernel's raw sector counts"
run ls
run status snap

step "10. Merge the snapshot back: the kernel's snapshot-merge rolls the origin back to it"
run merge --watch snap
merged=$(head -c 64M /dev/mapper/demo-base | sha256sum)
echo "origin sha256 $merged"
[ "$merged" = "$before" ] || { echo "the origin is not back at the snapshot's content" >&2; exit 1; }
verified "merge rolled the origin back to the snapshot's content (sha256 equal); the snapshot and its COW are gone"
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
	zv=$(zvol_dev demozp/base)
	local vol cursor
	vol=$(head -c 256M "$zv" | sha256sum)
	cursor=$(head -c 256M /dev/mapper/demo-base--ingest--2 | sha256sum)
	echo "zvol sha256   $vol"
	echo "cursor sha256 $cursor"
	[ "$vol" = "$cursor" ] || { echo "the zvol differs from the frozen snapshot it was ingested from" >&2; exit 1; }
	verified "ingest (full, then only the changed chunks) left the zvol equal to the frozen snapshot (sha256 equal)"
	run ls

	step "12. ZFS: replicate the zvol's history to a second zpool (full, then incremental from the common GUID)"
	loop_zpool demobk
	run replicate demozp/base demobk/base --dry-run
	run replicate demozp/base demobk/base
	dd if=/dev/urandom of=/dev/mapper/demo-base bs=4k count=64 seek=5000 conv=fsync status=none
	run ingest base demozp/base --cow 64M
	run replicate demozp/base demobk/base
	run zfs ls demobk/base
	local src dst
	src=$(head -c 256M "$(zvol_dev demozp/base)" | sha256sum)
	dst=$(head -c 256M "$(zvol_dev demobk/base)" | sha256sum)
	echo "source zvol sha256 $src"
	echo "replica sha256     $dst"
	[ "$src" = "$dst" ] || { echo "the replica differs from the source zvol" >&2; exit 1; }
	verified "replicate (full, then incremental from the common GUID) made the replica equal to the source (sha256 equal)"
	run zfs prune demozp/base --keep 1 --dry-run
	verified "zfs prune --dry-run planned retention without touching the replication base"
}

# zvol_dev DATASET: the /dev/zdN of a zvol (no udev in the VM, so no
# /dev/zvol links; zvol_id names a node's dataset). Nodes appear
# asynchronously after create and receive.
zvol_dev() {
	local d i
	for i in $(seq 100); do
		for d in /dev/zd*; do
			case $d in *p*) continue ;; esac
			[ "$(zvol_id "$d" 2>/dev/null)" = "$1" ] && { echo "$d"; return; }
		done
		sleep 0.1
	done
	echo "no /dev/zd* for $1" >&2
	return 1
}

ZDEVS=()
zfs_cleanup() {
	zpool destroy -f demozp >/dev/null 2>&1 || true
	zpool destroy -f demobk >/dev/null 2>&1 || true
	for d in "${ZDEVS[@]}"; do losetup -d "$d" 2>/dev/null || true; done
}
# DMSNAP_DEMO_ZFS=1 (make demo): the ZFS part must run; 0 (make demo
# ZFS=0) skips it; unset: run it when OpenZFS is there.
zfs_wanted=${DMSNAP_DEMO_ZFS:-auto}
have_zfs=0
[ -e /dev/zfs ] && command -v zpool >/dev/null && command -v zvol_id >/dev/null && have_zfs=1
if [ "$zfs_wanted" = 1 ] && [ "$have_zfs" = 0 ]; then
	echo "demo: the ZFS part was asked for but OpenZFS is not loaded in this machine (/dev/zfs, zpool, zvol_id)" >&2
	exit 1
fi
if [ "$zfs_wanted" != 0 ] && [ "$have_zfs" = 1 ]; then
	trap 'zfs_cleanup; cleanup' EXIT
	zfs_part
	zfs_cleanup
	run remove demo/base-ingest-3
else
	step "11. ZFS: skipped (make demo ZFS=0, or no OpenZFS on this machine)"
fi

step "13. Clean up: remove the volume and the pool"
run lv remove demo/base
run pool remove demo
echo
echo "== Summary: what the demo showed and verified"
for v in "${VERIFIED[@]}"; do echo "  ok  $v"; done
echo "demo finished"
