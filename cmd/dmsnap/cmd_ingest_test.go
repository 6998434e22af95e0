package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestIngestUsage: malformed arguments are usage errors (exit 2) found
// before anything is touched.
func TestIngestUsage(t *testing.T) {
	e := newCLIEnv(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"ingest", "p/base"}, "ingest needs [POOL/]BASE ZPOOL/DATASET"},
		{[]string{"ingest", "p/base", "tank"}, "want ZPOOL/DATASET"},
		{[]string{"ingest", "p/base", "tank/a b"}, "want ZPOOL/DATASET"},
		{[]string{"ingest", "p/base", "tank/vol", "--volblocksize", "3K"}, "power of two from 4K to 128K"},
		{[]string{"ingest", "p/base", "tank/vol", "--volblocksize", "256K"}, "power of two from 4K to 128K"},
		{[]string{"ingest", "p/base", "tank/vol", "--cow", "lots"}, "lots"},
	} {
		code, _, errs := e.run(tc.args...)
		if code != 2 || !strings.Contains(errs, tc.want) {
			t.Errorf("%v: exit %d, %q; want exit 2 mentioning %q", tc.args, code, errs, tc.want)
		}
	}
}

// TestIngestWithoutZFS: on a machine without the zfs module (the host
// tier) or without the zfs userland, ingest says which is missing.
func TestIngestWithoutZFS(t *testing.T) {
	if _, err := os.Stat("/dev/zfs"); err == nil {
		t.Skip("the zfs module is loaded here")
	}
	want := "zfs kernel module not loaded"
	if _, err := exec.LookPath("zfs"); err != nil {
		want = "zfs not installed"
	}
	e := newCLIEnv(t)
	code, _, errs := e.run("ingest", "p/base", "tank/vol")
	if code != 1 || !strings.Contains(errs, want) {
		t.Errorf("exit %d, %q; want exit 1 saying %q", code, errs, want)
	}
	t.Setenv("PATH", t.TempDir())
	code, _, errs = e.run("ingest", "p/base", "tank/vol")
	if code != 1 || !strings.Contains(errs, "zfs not installed") {
		t.Errorf("without zfs in PATH: exit %d, %q; want exit 1 saying zfs not installed", code, errs)
	}
}
