//go:build linux

package bench

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dmsnap/dmsnap/internal/testutil"
)

// lvm2 is an LVM2 volume group on a scratch loop device, driven with a
// private lvm.conf: the setup of cmd/dmsnap's stall benchmark (no udev,
// lvmpolld, dmeventd or metadata backups; a filter that admits the loop
// device alone).
type lvm2 struct {
	vg  string
	env []string
}

func newLVM2(b *testing.B, sizeBytes int64) *lvm2 {
	b.Helper()
	loopPath, _ := testutil.ScratchLoop(b, sizeBytes)
	dir := b.TempDir()
	conf := fmt.Sprintf(`devices { filter = [ "a|^%[1]s$|", "r|.*|" ] global_filter = [ "a|^%[1]s$|", "r|.*|" ]
	obtain_device_list_from_udev = 0 external_device_info_source = "none" use_devicesfile = 0 hints = "none" }
global { use_lvmpolld = 0 locking_dir = "%[2]s" }
activation { monitoring = 0 udev_sync = 0 udev_rules = 0 verify_udev_operations = 0 }
backup { backup = 0 archive = 0 }
`, loopPath, dir)
	if err := os.WriteFile(filepath.Join(dir, "lvm.conf"), []byte(conf), 0o600); err != nil {
		b.Fatal(err)
	}
	g := &lvm2{vg: "bv" + strings.TrimPrefix(testutil.UniqueName(b), testutil.DMNamePrefix),
		env: append(os.Environ(), "LVM_SYSTEM_DIR="+dir, "DM_DISABLE_UDEV=1", "LVM_SUPPRESS_FD_WARNINGS=1")}
	g.run(b, "vgcreate", "-y", "-s", "4m", g.vg, loopPath)
	b.Cleanup(func() {
		if err := g.tryRun("vgremove", "-f", g.vg); err != nil {
			b.Error(err)
		}
	})
	return g
}

func (g *lvm2) tryRun(args ...string) error {
	cmd := exec.Command("lvm", args...)
	cmd.Env = g.env
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("lvm %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

func (g *lvm2) run(tb testing.TB, args ...string) {
	tb.Helper()
	if err := g.tryRun(args...); err != nil {
		tb.Fatal(err)
	}
}
