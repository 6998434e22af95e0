package zfs

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func TestParseResumeEstimate(t *testing.T) {
	// Captured in the VM tier: an incremental receive cut after 4 MiB.
	ri, err := ParseResumeEstimate([]byte(readTestdata(t, "zfs-2.3.2-send-nvP-vm-t.txt")))
	if err != nil {
		t.Fatal(err)
	}
	want := ResumeInfo{ToName: "z58a4de73/vol@dmsnap-20261123T012719Z-000005", ToGUID: 0x4d09e9e2c60f8553,
		FromGUID: 0x61b9de7c3c886679, EstimateBytes: 21347760}
	if ri != want {
		t.Errorf("got %+v, want %+v", ri, want)
	}
	incr := "resume token contents:\nnvlist version: 0\n\tfromguid = 0x10\n\tobject = 0x1\n\toffset = 0x0\n\tbytes = 0x0\n" +
		"\ttoguid = 0x20\n\ttoname = tank/vol@s2\nincremental\ttank/vol@s1\ttank/vol@s2\t4096\nsize\t4096\n"
	if ri, err := ParseResumeEstimate([]byte(incr)); err != nil || ri.FromGUID != 0x10 || ri.ToGUID != 0x20 || ri.EstimateBytes != 4096 {
		t.Errorf("incremental: %+v %v", ri, err)
	}
	for _, bad := range []string{
		"",
		"full\ttank/vol@s\t1\nsize\t1\n", // no token contents
		"resume token contents:\nnvlist version: 0\n\ttoguid = 0x20\nsize\t1\n",                                 // no toname
		"resume token contents:\nnvlist version: 0\n\ttoguid = 32\n\ttoname = tank/vol@s\nsize\t1\n",            // not hex
		"resume token contents:\nnvlist version: 0\n\ttoguid = 0x20\n\ttoname = tank/vol\nsize\t1\n",            // not a snapshot
		"resume token contents:\nnvlist version: 0\n\ttoguid = 0x20\n\ttoname = tank/vol@s\n",                   // no size
		"resume token contents:\nnvlist version: 0\n\ttoguid = 0xzz\n\ttoname = tank/vol@s\nsize\t1\n",          // bad hex
		"resume token contents:\nnvlist version: 0\n\ttoguid = 0x20\n\ttoname = -x/vol@s\nsize\t1\n",            // bad name
		"resume token contents:\nnvlist version: 0\n\ttoguid = 0x20\n\ttoname = tank/vol@s\nsize\t1\nsize\t2\n", // two sizes
	} {
		if _, err := ParseResumeEstimate([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestRunnerResumeInfoAndAbort(t *testing.T) {
	f := newFake(t, map[string]reply{
		"zfs send -nvP -t 1-good":   {stdout: readTestdata(t, "zfs-2.3.2-send-nvP-vm-t.txt")},
		"zfs send -nvP -t 1-bad":    {stderr: readTestdata(t, "zfs-2.3.2-stderr-send-t-corrupt.txt"), err: errExit1},
		"zfs receive -A backup/vol": {},
		"zfs send -nvP -t 1-gone": {stdout: "resume token contents:\nnvlist version: 0\n\tobject = 0x1\n\toffset = 0x0\n\tbytes = 0x0\n" +
			"\ttoguid = 0x20\n\ttoname = tank/vol@gone\n", stderr: readTestdata(t, "zfs-2.3.2-stderr-send-t-gone.txt"), err: errExit1},
	})
	r := &Runner{Exec: f}
	ctx := context.Background()
	if ri, err := r.ResumeInfo(ctx, "1-good"); err != nil || ri.ToGUID != 0x4d09e9e2c60f8553 {
		t.Errorf("ResumeInfo: %+v %v", ri, err)
	}
	if ri, err := r.ResumeInfo(ctx, "1-bad"); !errors.Is(err, ErrResumeTokenInvalid) || ri != (ResumeInfo{}) {
		t.Errorf("corrupt token: %+v %v", ri, err)
	}
	// Its snapshot is gone: still rejected, but zfs printed whose it is.
	if ri, err := r.ResumeInfo(ctx, "1-gone"); !errors.Is(err, ErrResumeTokenInvalid) || ri.ToName != "tank/vol@gone" || ri.ToGUID != 0x20 {
		t.Errorf("stale token: %+v %v", ri, err)
	}
	if err := r.AbortReceive(ctx, "backup/vol"); err != nil {
		t.Error(err)
	}
	if err := r.AbortReceive(ctx, "-A"); !errors.Is(err, ErrInvalidName) {
		t.Errorf("bad name: %v", err)
	}
	if got := strings.Join(f.calls[3], " "); got != "zfs receive -A backup/vol" {
		t.Errorf("abort ran %q", got)
	}
}

// FuzzParseResumeEstimate: an error wraps ErrSyntax or ErrInvalidName and
// comes with the zero value; a success names a snapshot with a non-zero
// guid, and its size is the one ParseSendEstimate reads.
func FuzzParseResumeEstimate(f *testing.F) {
	seedFiles(f, "zfs-*-send-nvP-*.txt")
	f.Fuzz(func(t *testing.T, b []byte) {
		ri, err := ParseResumeEstimate(b)
		if err != nil {
			if !errors.Is(err, ErrSyntax) && !errors.Is(err, ErrInvalidName) {
				t.Fatalf("error %v is neither ErrSyntax nor ErrInvalidName", err)
			}
			if ri != (ResumeInfo{}) {
				t.Fatalf("error %v with result %+v", err, ri)
			}
			return
		}
		if ri.ToGUID == 0 || checkPointName(ri.ToName, Snapshot) != nil {
			t.Fatalf("accepted %+v", ri)
		}
		if n, err := ParseSendEstimate(b); err != nil || n != ri.EstimateBytes {
			t.Fatalf("size %d, ParseSendEstimate %d %v", ri.EstimateBytes, n, err)
		}
	})
}
