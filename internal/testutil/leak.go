package testutil

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/dmsnap/dmsnap/dm"
)

// RunWithLeakCheck runs the tests, then, wherever device-mapper is
// reachable, fails the run if a device is left over: every test must
// remove what it creates, the CLI's and LVM2's devices included. Inside
// the test VM, which boots fresh for each test binary, any device-mapper
// device is a leak; on a host run as root only those named
// DMNamePrefix+... are, since the host has devices of its own. Use it
// from TestMain: os.Exit(testutil.RunWithLeakCheck(m)).
func RunWithLeakCheck(m *testing.M) int {
	code := m.Run()
	if leaked := leakedDevices(); len(leaked) > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: leaked device-mapper devices: %s\n", strings.Join(leaked, ", "))
		if code == 0 {
			code = 1
		}
	}
	return code
}

func leakedDevices() []string {
	if !InVM() && os.Geteuid() != 0 {
		return nil
	}
	c, err := dm.Open()
	if err != nil {
		if !InVM() && dm.Unavailable(err) {
			return nil // host without device-mapper
		}
		return []string{"(cannot list: " + err.Error() + ")"}
	}
	defer c.Close()
	list, err := c.List()
	if err != nil {
		return []string{"(cannot list: " + err.Error() + ")"}
	}
	var leaked []string
	for _, e := range list {
		if InVM() || strings.HasPrefix(e.Name, DMNamePrefix) {
			leaked = append(leaked, e.Name)
		}
	}
	return leaked
}
