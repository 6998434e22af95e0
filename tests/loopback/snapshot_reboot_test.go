package loopback

import (
	"strings"
	"testing"
)

// snapFirstBoot makes a pool, an origin with data, a persistent
// snapshot, then overwrites the origin, records both checksums and powers
// off with everything active.
const snapFirstBoot = `set -euo pipefail
B=$1; D=$2
G="--config-dir $D/etc1"
$B $G pool create sr --file $D/a.img --size 64M --default
$B $G lv create base --size 16M
dd if=/dev/urandom of=/dev/mapper/sr-base bs=1M count=16 conv=fsync status=none
sha256sum < /dev/mapper/sr-base > $D/old
$B $G create base snap --cow 8M --persistent
dd if=/dev/urandom of=/dev/mapper/sr-base bs=1M count=4 conv=fsync status=none
sha256sum < /dev/mapper/sr-base > $D/new
test "$(sha256sum < /dev/mapper/sr-snap)" = "$(cat $D/old)"
$B $G ls
`

// snapSecondBoot imports the pool in a fresh kernel and activates it:
// the snapshot reads the old data, the origin the new.
const snapSecondBoot = `set -euo pipefail
B=$1; D=$2
G="--config-dir $D/etc2"
$B $G pool import $D/a.img
$B $G activate sr
test "$(sha256sum < /dev/mapper/sr-snap)" = "$(cat $D/old)" && echo SNAP-OLD-OK
test "$(sha256sum < /dev/mapper/sr-base)" = "$(cat $D/new)" && echo ORIGIN-NEW-OK
$B $G ls sr
$B $G status sr/snap
$B $G remove sr/snap
$B $G dm status sr-base
$B $G deactivate sr
echo REBOOT-OK
`

// TestSnapshotReboot: a persistent snapshot survives a real reboot.
//  1. boot 1: pool on an image file, origin with random data, create
//     snap --persistent, overwrite part of the origin, power off active;
//  2. boot 2 (fresh kernel, empty state dir): pool import, activate; the
//     snapshot reads the old data and the origin the new; removing the
//     snapshot leaves a linear origin.
func TestSnapshotReboot(t *testing.T) {
	root, vmrun, dmsnap := tools(t)
	kernel, dir := scratch(t, root, "snapreboot-")
	out := boot(t, vmrun, kernel, snapFirstBoot, dmsnap, dir)
	if !strings.Contains(out, "snap") || !strings.Contains(out, "active") {
		t.Fatalf("first boot: snapshot not listed:\n%s", out)
	}
	out = boot(t, vmrun, kernel, snapSecondBoot, dmsnap, dir)
	for _, want := range []string{"SNAP-OLD-OK", "ORIGIN-NEW-OK", "removed snapshot sr/snap", "linear", "REBOOT-OK"} {
		if !strings.Contains(out, want) {
			t.Errorf("second boot output lacks %q:\n%s", want, out)
		}
	}
}
