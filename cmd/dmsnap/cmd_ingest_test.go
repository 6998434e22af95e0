package main

import (
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/dmsnap/dmsnap/ingest"
	"github.com/dmsnap/dmsnap/metrics"
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
// tier) or without the zfs userland, ingest says which is missing. zfs(8)
// loads the module itself where it can (in the VM, from the dkms build):
// then the guard passes and the missing pool is the error.
func TestIngestWithoutZFS(t *testing.T) {
	if _, err := os.Stat("/dev/zfs"); err == nil {
		t.Skip("the zfs module is loaded here")
	}
	e := newCLIEnv(t)
	code, _, errs := e.run("ingest", "p/base", "tank/vol")
	want := "zfs kernel module not loaded"
	switch _, err := exec.LookPath("zfs"); {
	case err != nil:
		want = "zfs not installed"
	case fileExists("/dev/zfs"):
		want = "no pool named p" // zfs loaded the module
	}
	if code != 1 || !strings.Contains(errs, want) {
		t.Errorf("exit %d, %q; want exit 1 saying %q", code, errs, want)
	}
	t.Setenv("PATH", t.TempDir())
	code, _, errs = e.run("ingest", "p/base", "tank/vol")
	if code != 1 || !strings.Contains(errs, "zfs not installed") {
		t.Errorf("without zfs in PATH: exit %d, %q; want exit 1 saying zfs not installed", code, errs)
	}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// TestRecordTransfer: the last transfer per op and origin is kept in the
// state file; a replication of an ingested dataset is named by its
// origin, any other by the dataset.
func TestRecordTransfer(t *testing.T) {
	e := newCLIEnv(t)
	gopts := &globalOptions{ConfigDir: e.path("cfg"), stderr: io.Discard}
	ctx := t.Context()
	at := time.Date(2026, 11, 23, 1, 0, 0, 0, time.UTC)
	recordTransfer(ctx, gopts, stateTransfer{Op: metrics.Ingest, Pool: "p", Origin: "base", At: at, Bytes: 10})
	recordTransfer(ctx, gopts, stateTransfer{Op: metrics.Ingest, Pool: "p", Origin: "base", At: at.Add(time.Hour), Bytes: 20})
	if err := (&ingestEnv{gopts: gopts}).SaveLineage(ctx, ingest.Lineage{Dataset: "tank/base", Pool: "p", Origin: "base"}); err != nil {
		t.Fatal(err)
	}
	recordTransfer(ctx, gopts, replicationTransfer(gopts, "tank/base", 30))
	recordTransfer(ctx, gopts, replicationTransfer(gopts, "tank/other", 40))
	st, err := loadState(gopts)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]uint64{"ingest p/base": 20, "replication p/base": 30, "replication /tank/other": 40}
	if len(st.Transfers) != len(want) {
		t.Fatalf("transfers %+v, want keys %v", st.Transfers, want)
	}
	for k, b := range want {
		if got := st.Transfers[k]; got.Bytes != b {
			t.Errorf("%s: %+v, want %d bytes", k, got, b)
		}
	}
	if got := st.Transfers["ingest p/base"].At; !got.Equal(at.Add(time.Hour)) {
		t.Errorf("ingest at %v, want the later one", got)
	}
}
