package sys_test

import (
	"os"
	"testing"

	"github.com/dmsnap/dmsnap/internal/testutil"
)

// TestMain fails the run if a test leaves a device-mapper device behind.
func TestMain(m *testing.M) { os.Exit(testutil.RunWithLeakCheck(m)) }
