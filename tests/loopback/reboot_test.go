package loopback

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dmsnap/dmsnap/internal/testutil"
)

const vmTestsEnv = "DMSNAP_VM_TESTS"

// tools returns the VM runner and the dmsnap binary; make test-vm builds
// both.
func tools(t *testing.T) (root, vmrun, dmsnap string) {
	t.Helper()
	if os.Getenv(vmTestsEnv) != "1" {
		t.Skipf("boots QEMU; set %s=1 (make test-vm) to run", vmTestsEnv)
	}
	root = testutil.RepoRoot(t)
	vmrun = filepath.Join(root, ".cache", "bin", "vmrun")
	dmsnap = filepath.Join(root, "bin", "dmsnap")
	for _, p := range []string{vmrun, dmsnap} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%v (run `make vmrun build` first)", err)
		}
	}
	return root, vmrun, dmsnap
}

// boot runs script with bash in a fresh VM and returns its output.
// scratch picks the guest kernel (DMSNAP_VM_KERNEL, default bookworm) and
// makes a directory under the repo's .cache/loopback, which the runner
// shares read-write with every boot; it is removed when the test ends.
func scratch(t *testing.T, root, prefix string) (kernel, dir string) {
	t.Helper()
	kernel = os.Getenv("DMSNAP_VM_KERNEL")
	if kernel == "" {
		kernel = "bookworm"
	}
	base := filepath.Join(root, ".cache", "loopback")
	if err := os.MkdirAll(base, 0o755); err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp(base, prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return kernel, dir
}

func boot(t *testing.T, vmrun, kernel, script string, args ...string) string {
	t.Helper()
	cmd := exec.Command(vmrun, append([]string{"--kernel", kernel, "--timeout", "300s", "bash", "-c", script, "script"}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		t.Fatalf("VM script failed (exit %d):\n%s", ee.ExitCode(), out.String())
	}
	if err != nil {
		t.Fatal(err)
	}
	return out.String()
}

// firstBoot makes a pool on two image files (one created by --file, one
// added by pool extend --file), two volumes (one spanning both PVs),
// writes random data, records its checksums, and powers off with the
// volumes still active, as a machine that is switched off.
const firstBoot = `set -euo pipefail
B=$1; D=$2
G="--config-dir $D/etc1"
$B $G pool create rb --file $D/a.img --size 48M --default
$B $G pool extend rb --file $D/b.img --size 48M
$B $G lv create rb/one --size 8M
$B $G lv create two --size 60M
dd if=/dev/urandom of=/dev/mapper/rb-one bs=1M count=8 conv=fsync status=none
dd if=/dev/urandom of=/dev/mapper/rb-two bs=1M count=60 conv=fsync status=none
sha256sum /dev/mapper/rb-one /dev/mapper/rb-two > $D/sums
$B $G lv ls
`

// secondBoot starts from nothing but the image files: a new state file,
// no loop devices. pool import finds the pool by its labels, activate
// attaches the images and builds the devices, and the data must match.
// A second activate changes nothing; deactivate detaches everything.
const secondBoot = `set -euo pipefail
B=$1; D=$2
G="--config-dir $D/etc2"
test -z "$(ls /dev/mapper | grep rb- || true)"
$B $G pool import $D/a.img $D/b.img
$B $G activate rb
sha256sum -c $D/sums
$B $G --json activate rb | grep -c '"kind": "keep"'
$B $G pool show rb
$B $G deactivate rb
test -z "$(losetup -a | grep $D || true)"
echo REBOOT-OK
`

// TestReboot is the "real reboot": two VM boots sharing only the
// image files.
//  1. boot 1: pool create --file, pool extend --file, lv create x2, write
//     random data, checksum, power off with everything active;
//  2. boot 2 (fresh kernel, empty state dir): pool import of the two
//     images, activate, checksums match, second activate keeps both
//     devices, deactivate leaves no loop device.
func TestReboot(t *testing.T) {
	root, vmrun, dmsnap := tools(t)
	kernel, dir := scratch(t, root, "reboot-")

	out := boot(t, vmrun, kernel, firstBoot, dmsnap, dir)
	if !strings.Contains(out, "rb    one") || !strings.Contains(out, "rb    two") {
		t.Fatalf("first boot: volumes not listed:\n%s", out)
	}
	sums, err := os.ReadFile(filepath.Join(dir, "sums"))
	if err != nil || strings.Count(string(sums), "\n") != 2 {
		t.Fatalf("first boot left no checksums: %v", err)
	}

	out = boot(t, vmrun, kernel, secondBoot, dmsnap, dir)
	for _, want := range []string{
		"imported pool rb", "/dev/mapper/rb-one: OK", "/dev/mapper/rb-two: OK",
		"\n2\n", // both devices kept by the second activate
		"REBOOT-OK",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("second boot output lacks %q:\n%s", want, out)
		}
	}
}
