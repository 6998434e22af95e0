package merge

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/dmsnap/dmsnap/dm"
	"github.com/dmsnap/dmsnap/internal/testutil"
)

// TestMain runs the tests, then, wherever device-mapper is reachable (the
// test VM, or a host run with -dmsnap.root), fails the run if a device
// named testutil.DMNamePrefix+... is left over: every test must remove
// what it creates.
func TestMain(m *testing.M) {
	code := m.Run()
	if leaked := leakedDevices(); len(leaked) > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: leaked device-mapper devices: %s\n", strings.Join(leaked, ", "))
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

func leakedDevices() []string {
	if !testutil.InVM() && os.Geteuid() != 0 {
		return nil
	}
	c, err := dm.Open()
	if err != nil {
		if !testutil.InVM() && dm.Unavailable(err) {
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
		if strings.HasPrefix(e.Name, testutil.DMNamePrefix) {
			leaked = append(leaked, e.Name)
		}
	}
	return leaked
}
