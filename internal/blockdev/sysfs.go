package blockdev

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/dmsnap/dmsnap/internal/sys"
)

// DevNum returns the major and minor number of the block device at path.
func DevNum(path string) (major, minor uint32, err error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, 0, err
	}
	major, minor, ok := sys.BlockDevNum(fi)
	if !ok {
		return 0, 0, fmt.Errorf("%s: not a block device", path)
	}
	return major, minor, nil
}

// IsDM reports whether the block device at path is a device-mapper device
// (sysfs has a dm directory for it), whatever its node is called.
func IsDM(path string) bool {
	if strings.HasPrefix(filepath.Base(path), "dm-") {
		return true
	}
	major, minor, err := DevNum(path)
	if err != nil {
		return false
	}
	_, err = os.Stat(fmt.Sprintf("/sys/dev/block/%d:%d/dm", major, minor))
	return err == nil
}

// DMUUID returns the device-mapper UUID of the device major:minor, and
// false if it is not a device-mapper device or has none.
func DMUUID(major, minor uint32) (string, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/sys/dev/block/%d:%d/dm/uuid", major, minor))
	if err != nil {
		return "", false
	}
	u := strings.TrimSpace(string(b))
	return u, u != ""
}

// Holders names the devices stacked on the block device at path (from
// /sys/class/block/<dev>/holders), a device-mapper one as "dm-N (name)".
// A device nothing holds, or that is not a block device, has none.
func Holders(path string) []string {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return nil
	}
	ents, err := os.ReadDir(filepath.Join("/sys/class/block", filepath.Base(real), "holders"))
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		name := e.Name()
		if b, err := os.ReadFile(filepath.Join("/sys/class/block", name, "dm", "name")); err == nil {
			name += " (" + strings.TrimSpace(string(b)) + ")"
		}
		out = append(out, name)
	}
	return out
}
