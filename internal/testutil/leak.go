package testutil

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/dmsnap/dmsnap/dm"
)

// RunWithLeakCheck runs the tests, then, wherever device-mapper is
// reachable (the test VM, or a host run as root), fails the run if a
// device named DMNamePrefix+... is left over: every test must remove what
// it creates. Use it from TestMain: os.Exit(testutil.RunWithLeakCheck(m)).
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
		if strings.HasPrefix(e.Name, DMNamePrefix) {
			leaked = append(leaked, e.Name)
		}
	}
	return leaked
}
