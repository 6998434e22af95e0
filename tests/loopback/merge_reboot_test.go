package loopback

import (
	"strings"
	"testing"
)

// mergeFirstBoot makes a pool with a 256 MiB origin, snapshots it,
// rewrites 224 MiB of it (a large COW, so the merge takes a while),
// starts the merge in the background and powers off at once.
const mergeFirstBoot = `set -euo pipefail
B=$1; D=$2
G="--config-dir $D/etc1"
$B $G pool create mr --file $D/a.img --size 640M --default
$B $G lv create base --size 256M
dd if=/dev/urandom of=/dev/mapper/mr-base bs=1M count=256 conv=fsync status=none
$B $G create base snap --cow 300M --persistent
sha256sum < /dev/mapper/mr-snap > $D/old
dd if=/dev/urandom of=/dev/mapper/mr-base bs=1M count=224 seek=16 conv=fsync status=none
$B $G merge --background snap
$B $G dm status mr-base
echo POWEROFF
`

// mergeSecondBoot imports the pool in a fresh kernel: activate loads
// snapshot-merge again, the kernel resumes, merge --watch re-attaches
// and finishes; the origin then holds the snapshot's data.
const mergeSecondBoot = `set -euo pipefail
B=$1; D=$2
G="--config-dir $D/etc2"
$B $G pool import $D/a.img
$B $G activate mr
$B $G dm status mr-base
$B $G --json merge --watch --interval 100ms mr/snap | tail -n 3
test "$(sha256sum < /dev/mapper/mr-base)" = "$(cat $D/old)" && echo ORIGIN-IS-SNAPSHOT-OK
$B $G dm status mr-base
$B $G activate mr
$B $G deactivate mr
echo REBOOT-OK
`

// TestMergeReboot: a merge interrupted by a power-off resumes.
//  1. boot 1: origin 256 MiB of random data, snapshot, 224 MiB rewritten,
//     merge --background, power off at once (the merge is running);
//  2. boot 2 (fresh kernel, empty state dir): pool import, activate
//     (the origin gets snapshot-merge again), merge --watch finishes it;
//     the origin's checksum is the snapshot's; the origin is linear.
func TestMergeReboot(t *testing.T) {
	root, vmrun, dmsnap := tools(t)
	kernel, dir := scratch(t, root, "mergereboot-")
	out := boot(t, vmrun, kernel, mergeFirstBoot, dmsnap, dir)
	if !strings.Contains(out, "merge of mr/snap into mr/base started") || !strings.Contains(out, "POWEROFF") {
		t.Fatalf("first boot: merge not started:\n%s", out)
	}
	t.Logf("first boot:\n%s", out)
	out = boot(t, vmrun, kernel, mergeSecondBoot, dmsnap, dir)
	t.Logf("second boot:\n%s", out)
	for _, want := range []string{"snapshot-merge", `"message_type":"merge_finished"`, "ORIGIN-IS-SNAPSHOT-OK", "linear", "REBOOT-OK"} {
		if !strings.Contains(out, want) {
			t.Errorf("second boot output lacks %q:\n%s", want, out)
		}
	}
}
