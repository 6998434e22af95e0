//go:build linux

package zfs

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dmsnap/dmsnap/internal/testutil"
)

var update = flag.Bool("update", false, "write testdata/zfs-<version>-*.txt captured from the real zfs (inside the VM only)")

// zfsTierEnv is set to 1 by `make test-zfs` (vmrun --env): inside the VM
// it turns a missing zfs module into a failure instead of a skip.
const zfsTierEnv = "DMSNAP_ZFS_TIER"

// requireZFS skips unless the test runs inside the VM with the zfs module
// loaded (vmrun --modules spl.ko,zfs.ko). In the ZFS tier a missing
// module or userland is a failure. It returns a Runner for the host's
// zfs/zpool (shared into the guest).
func requireZFS(t *testing.T) *Runner {
	t.Helper()
	testutil.RequireKernel(t)
	tier := os.Getenv(zfsTierEnv) == "1"
	miss := func(format string, args ...any) {
		t.Helper()
		if tier {
			t.Fatalf(format, args...)
		}
		t.Skipf(format+" (the ZFS tier, make test-zfs, loads it)", args...)
	}
	if _, err := os.Stat("/dev/zfs"); err != nil {
		miss("zfs module not loaded: %v", err)
	}
	r := &Runner{}
	for _, b := range []struct {
		name string
		dst  *string
	}{{BinZFS, &r.ZFS}, {BinZPool, &r.ZPool}} {
		p, err := exec.LookPath(b.name)
		if err != nil {
			p = "/usr/sbin/" + b.name
			if _, err := os.Stat(p); err != nil {
				miss("%s not in PATH (vmrun --tools zfs puts OpenZFS there)", b.name)
			}
		}
		*b.dst = p
	}
	return r
}

// capture writes a real output to testdata/zfs-2.3.2-<name> with -update.
func capture(t *testing.T, name string, data []byte) {
	t.Helper()
	if !*update {
		return
	}
	if err := os.WriteFile(filepath.Join("testdata", "zfs-2.3.2-"+name), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// captureErr checks that err answers errors.Is(want) and captures its
// stderr.
func captureErr(t *testing.T, name string, err, want error) {
	t.Helper()
	var ce *CommandError
	if !errors.As(err, &ce) {
		t.Fatalf("%s: got %v, want a *CommandError answering %v", name, err, want)
	}
	capture(t, name, []byte(ce.Stderr))
	if !errors.Is(err, want) {
		t.Errorf("%s: got %v, want errors.Is %v", name, err, want)
	}
}

// zfsOut runs a zfs or zpool command and returns its stdout.
func zfsOut(t *testing.T, r *Runner, bin string, args ...string) []byte {
	t.Helper()
	var out bytes.Buffer
	if err := r.Run(context.Background(), bin, args, "", nil, &out); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// scratchPool creates a pool on a fresh loop device (file vdevs fail in
// the VM's chroot) without a cachefile or mountpoint (the root is
// read-only), and destroys it in t.Cleanup before the loop is detached.
func scratchPool(t *testing.T, r *Runner, name string, sizeBytes int64) {
	t.Helper()
	dev, _ := testutil.ScratchLoop(t, sizeBytes)
	zfsOut(t, r, BinZPool, "create", "-f", "-o", "cachefile=none", "-m", "none", name, dev)
	t.Cleanup(func() {
		if err := r.Run(context.Background(), BinZPool, []string{"destroy", "-f", name}, name, nil, nil); err != nil {
			t.Errorf("destroy pool: %v", err)
		}
	})
}

// zvolDevice waits for the /dev/zdN of dataset: without udev there is no
// /dev/zvol link, and the node appears asynchronously after create or
// receive. zvol_id (udev's helper, in PATH in the ZFS tier) maps a node to
// its name (BLKZNAME).
func zvolDevice(t *testing.T, dataset string) string {
	t.Helper()
	zvolID, err := exec.LookPath("zvol_id")
	if err != nil {
		zvolID = "/lib/udev/zvol_id"
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		nodes, _ := filepath.Glob("/dev/zd*")
		for _, n := range nodes {
			if strings.ContainsRune(strings.TrimPrefix(n, "/dev/zd"), 'p') {
				continue // partition
			}
			out, err := exec.Command(zvolID, n).Output()
			if err == nil && strings.TrimSpace(string(out)) == dataset {
				return n
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no /dev/zd* for %s after 30 s", dataset)
	return ""
}

// writeRandom writes n random bytes at off and syncs.
func writeRandom(t *testing.T, dev string, off, n int64) {
	t.Helper()
	f, err := os.OpenFile(dev, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, n)
	_, _ = rand.Read(buf)
	if _, err := f.WriteAt(buf, off); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
}

// limitWriter passes the first n bytes on and then cancels the sender,
// truncating the stream as a killed transfer would.
type limitWriter struct {
	w      io.Writer
	n      int64
	cancel context.CancelFunc
}

var errCut = errors.New("stream cut by the test")

func (l *limitWriter) Write(p []byte) (int, error) {
	if l.n <= 0 {
		l.cancel()
		return 0, errCut
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.w.Write(p)
	l.n -= int64(n)
	return n, err
}

// transfer pipes `zfs send s` into `zfs receive -s -u target`. With
// limit > 0 the stream is cut after limit bytes. It returns both errors.
func transfer(r *Runner, s Send, target string, limit int64) (sendErr, recvErr error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	var w io.Writer = pw
	if limit > 0 {
		w = &limitWriter{w: pw, n: limit, cancel: cancel}
	}
	done := make(chan error, 1)
	go func() {
		err := r.Send(ctx, s, w)
		pw.Close() // the receiver sees EOF: a complete or a truncated stream
		done <- err
	}()
	recvErr = r.Receive(context.Background(), target, false, pr)
	pr.CloseWithError(errors.New("receiver exited"))
	return <-done, recvErr
}

func guidOf(t *testing.T, r *Runner, name string) string {
	t.Helper()
	m, err := r.Get(context.Background(), name, "guid")
	if err != nil {
		t.Fatal(err)
	}
	return m["guid"]
}

// TestZFSReal checks the package against real OpenZFS 2.3.2 in the VM.
// Scenario:
//   - Version: userland and kmod are both 2.3.2 → CompatOK;
//   - pools tank and backup on loop devices; zvol tank/vol, its /dev/zdN;
//   - snapshots s1, s2, bookmark b1 of s1: Points in createtxg order, the
//     bookmark has its snapshot's guid and createtxg;
//   - typed errors: missing dataset/pool/snapshot/bookmark, duplicate
//     zvol/snapshot/bookmark, a filesystem is not a zvol, a held snapshot
//     is busy, a send from a missing base;
//   - send -nvP estimates; full send → receive -s -u; destroy s1, send -i
//     from #b1 → receive: received guids equal the sent ones;
//   - receive into a target with unrelated history, into an existing
//     target, into a modified target: typed errors;
//   - a receive cut mid-stream leaves receive_resume_token; send -t
//     resumes it; a corrupt token is ErrResumeTokenInvalid.
//
// With -update it writes the real outputs to testdata/zfs-2.3.2-*.
func TestZFSReal(t *testing.T) {
	r := requireZFS(t)
	ctx := context.Background()
	start := time.Now()
	defer func() { t.Logf("TestZFSReal body took %v", time.Since(start)) }()

	// Version guard against the real pair.
	vs, err := r.Version(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if g := CheckVersions(vs); g.Compat != CompatOK || !g.SendIncrementalPackage || !vs.Userland.Is(2, 3, 2) || !vs.Kernel.Is(2, 3, 2) {
		t.Fatalf("versions %+v: guard %+v, want 2.3.2 on 2.3.2, CompatOK", vs, g)
	}
	capture(t, "version-j.json", zfsOut(t, r, BinZFS, "version", "-j"))
	capture(t, "version.txt", zfsOut(t, r, BinZFS, "version"))

	scratchPool(t, r, "tank", 256<<20)
	scratchPool(t, r, "backup", 256<<20)

	const vol = "tank/vol"
	if err := r.CreateVolume(ctx, vol, 64<<20, 16<<10, true); err != nil {
		t.Fatal(err)
	}
	dev := zvolDevice(t, vol)
	v, err := r.Volume(ctx, vol)
	if err != nil {
		t.Fatal(err)
	}
	if v.SizeBytes != 64<<20 || v.VolBlockSizeBytes != 16<<10 || v.GUID == 0 || v.ResumeToken != "" {
		t.Errorf("Volume = %+v", v)
	}
	captureErr(t, "stderr-create-exists.txt", r.CreateVolume(ctx, vol, 64<<20, 16<<10, true), ErrExists)

	// A filesystem is not a zvol; missing things are ErrDatasetNotFound.
	zfsOut(t, r, BinZFS, "create", "tank/fs")
	if _, err := r.Volume(ctx, "tank/fs"); !errors.Is(err, ErrNotAZvol) {
		t.Errorf("Volume(tank/fs) = %v, want ErrNotAZvol", err)
	}
	_, err = r.Volume(ctx, "tank/nope")
	captureErr(t, "stderr-get-missing.txt", err, ErrDatasetNotFound)
	_, err = r.Points(ctx, "tank/nope")
	captureErr(t, "stderr-list-missing.txt", err, ErrDatasetNotFound)
	captureErr(t, "stderr-zpool-missing.txt", r.Run(ctx, BinZPool, []string{"list", "nopool"}, "nopool", nil, nil), ErrDatasetNotFound)
	captureErr(t, "stderr-create-nopool.txt", r.CreateVolume(ctx, "nopool/vol", 1<<20, 16<<10, true), ErrDatasetNotFound)
	if ok, err := r.Exists(ctx, "tank/nope@x"); ok || err != nil {
		t.Errorf("Exists(tank/nope@x) = %v, %v", ok, err)
	}

	// Snapshots and a bookmark.
	writeRandom(t, dev, 0, 1<<20)
	if err := r.Snapshot(ctx, vol+"@s1"); err != nil {
		t.Fatal(err)
	}
	captureErr(t, "stderr-snapshot-exists.txt", r.Snapshot(ctx, vol+"@s1"), ErrExists)
	if err := r.Bookmark(ctx, vol+"@s1", vol+"#b1"); err != nil {
		t.Fatal(err)
	}
	captureErr(t, "stderr-bookmark-exists.txt", r.Bookmark(ctx, vol+"@s1", vol+"#b1"), ErrExists)
	writeRandom(t, dev, 4<<20, 1<<20)
	if err := r.Snapshot(ctx, vol+"@s2"); err != nil {
		t.Fatal(err)
	}
	listOut := zfsOut(t, r, BinZFS, ListArgs(vol)...)
	capture(t, "list-Hp-vm-sender.txt", listOut)
	pts, err := r.Points(ctx, vol)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range pts {
		names = append(names, p.Name)
	}
	if strings.Join(names, " ") != "tank/vol@s1 tank/vol#b1 tank/vol@s2" {
		t.Fatalf("Points = %v, want s1, #b1, s2 in createtxg order", names)
	}
	if pts[0].GUID != pts[1].GUID || pts[0].CreateTXG != pts[1].CreateTXG || pts[1].Kind != Bookmark {
		t.Errorf("bookmark %+v differs from its snapshot %+v", pts[1], pts[0])
	}
	if pts[2].CreateTXG <= pts[0].CreateTXG || pts[2].GUID == pts[0].GUID {
		t.Errorf("s2 %+v not after s1 %+v", pts[2], pts[0])
	}

	// Destroying what is missing or held.
	captureErr(t, "stderr-destroy-missing-snapshot.txt", r.Destroy(ctx, vol+"@gone"), ErrDatasetNotFound)
	captureErr(t, "stderr-destroy-missing-bookmark.txt", r.Destroy(ctx, vol+"#gone"), ErrDatasetNotFound)
	if err := r.DestroyIfExists(ctx, vol+"@gone"); err != nil {
		t.Errorf("DestroyIfExists(missing) = %v", err)
	}
	zfsOut(t, r, BinZFS, "hold", "keep", vol+"@s2")
	captureErr(t, "stderr-destroy-busy.txt", r.Destroy(ctx, vol+"@s2"), ErrBusy)
	zfsOut(t, r, BinZFS, "release", "keep", vol+"@s2")

	// Estimates.
	full := Send{To: vol + "@s1"}
	incr := Send{Incremental: true, From: vol + "#b1", To: vol + "@s2"}
	for _, c := range []struct {
		name string
		s    Send
	}{{"send-nvP-vm-full.txt", full}, {"send-nvP-vm-incremental.txt", incr}} {
		capture(t, c.name, zfsOut(t, r, BinZFS, SendEstimateArgs(c.s)...))
		n, err := r.SendEstimate(ctx, c.s)
		if err != nil {
			t.Fatal(err)
		}
		if n < 1<<20 || n > 8<<20 {
			t.Errorf("SendEstimate(%+v) = %d, want about 1 MiB of changes", c.s, n)
		}
	}

	// Full, then incremental from the bookmark after the base is gone.
	if se, re := transfer(r, full, "backup/vol", 0); se != nil || re != nil {
		t.Fatalf("full send/receive: %v / %v", se, re)
	}
	if g, w := guidOf(t, r, "backup/vol@s1"), guidOf(t, r, vol+"@s1"); g != w {
		t.Errorf("received s1 guid %s, sent %s", g, w)
	}
	if err := r.Destroy(ctx, vol+"@s1"); err != nil {
		t.Fatal(err)
	}
	_, err = r.SendEstimate(ctx, Send{Incremental: true, From: vol + "@s1", To: vol + "@s2"})
	captureErr(t, "stderr-send-base-missing.txt", err, ErrDatasetNotFound)
	if se, re := transfer(r, incr, "backup/vol", 0); se != nil || re != nil {
		t.Fatalf("incremental send -i #b1 / receive: %v / %v", se, re)
	}
	if g, w := guidOf(t, r, "backup/vol@s2"), guidOf(t, r, vol+"@s2"); g != w {
		t.Errorf("received s2 guid %s, sent %s", g, w)
	}
	rpts, err := r.Points(ctx, "backup/vol")
	if err != nil {
		t.Fatal(err)
	}
	capture(t, "list-Hp-vm-receiver.txt", zfsOut(t, r, BinZFS, ListArgs("backup/vol")...))
	if len(rpts) != 2 || rpts[0].GUID != pts[0].GUID || rpts[1].GUID != pts[2].GUID {
		t.Errorf("receiver points %+v, sender %+v", rpts, pts)
	}

	// Receiving into the wrong targets.
	if err := r.CreateVolume(ctx, "tank/other", 8<<20, 16<<10, true); err != nil {
		t.Fatal(err)
	}
	if err := r.Snapshot(ctx, "tank/other@x"); err != nil {
		t.Fatal(err)
	}
	_, re := transfer(r, Send{To: "tank/other@x"}, "backup/vol", 0)
	captureErr(t, "stderr-receive-exists.txt", re, ErrExists)
	if se, re := transfer(r, Send{To: "tank/other@x"}, "backup/unrelated", 0); se != nil || re != nil {
		t.Fatalf("full send of tank/other: %v / %v", se, re)
	}
	_, re = transfer(r, incr, "backup/unrelated", 0)
	captureErr(t, "stderr-receive-mismatch.txt", re, ErrIncrementalMismatch)

	writeRandom(t, dev, 8<<20, 1<<20)
	if err := r.Snapshot(ctx, vol+"@s3"); err != nil {
		t.Fatal(err)
	}
	bdev := zvolDevice(t, "backup/vol")
	writeRandom(t, bdev, 0, 64<<10)
	zfsOut(t, r, BinZPool, "sync", "backup")
	_, re = transfer(r, Send{Incremental: true, From: vol + "@s2", To: vol + "@s3"}, "backup/vol", 0)
	captureErr(t, "stderr-receive-modified.txt", re, ErrDestinationModified)

	// An interrupted receive, resumed.
	writeRandom(t, dev, 16<<20, 24<<20)
	if err := r.Snapshot(ctx, vol+"@big"); err != nil {
		t.Fatal(err)
	}
	se, re := transfer(r, Send{To: vol + "@big"}, "backup/resumed", 8<<20)
	var ce *CommandError
	if re == nil || !errors.As(re, &ce) {
		t.Fatalf("cut receive: send %v, receive %v; want a receive error", se, re)
	}
	capture(t, "stderr-receive-cut.txt", []byte(ce.Stderr))
	m, err := r.Get(ctx, "backup/resumed", "receive_resume_token")
	if err != nil {
		t.Fatal(err)
	}
	tok := m["receive_resume_token"]
	if tok == "" {
		t.Fatalf("no receive_resume_token after a cut receive (receive said %q)", ce.Stderr)
	}
	_, err = r.SendEstimate(ctx, Send{ResumeToken: tok[:len(tok)/2] + "x"})
	captureErr(t, "stderr-send-t-corrupt.txt", err, ErrResumeTokenInvalid)
	if se, re := transfer(r, Send{ResumeToken: tok}, "backup/resumed", 0); se != nil || re != nil {
		t.Fatalf("resumed send -t / receive: %v / %v", se, re)
	}
	if g, w := guidOf(t, r, "backup/resumed@big"), guidOf(t, r, vol+"@big"); g != w {
		t.Errorf("resumed big guid %s, sent %s", g, w)
	}
	m, err = r.Get(ctx, "backup/resumed", "receive_resume_token")
	if err != nil || m["receive_resume_token"] != "" {
		t.Errorf("token after resume = %q, %v; want none", m["receive_resume_token"], err)
	}

	// A token whose snapshot was destroyed in the meantime.
	writeRandom(t, dev, 0, 4<<20)
	if err := r.Snapshot(ctx, vol+"@gone"); err != nil {
		t.Fatal(err)
	}
	if _, re := transfer(r, Send{To: vol + "@gone"}, "backup/gone", 1<<20); re == nil {
		t.Fatal("cut receive of @gone succeeded")
	}
	if m, err = r.Get(ctx, "backup/gone", "receive_resume_token"); err != nil || m["receive_resume_token"] == "" {
		t.Fatalf("no token for backup/gone: %v", err)
	}
	if err := r.Destroy(ctx, vol+"@gone"); err != nil {
		t.Fatal(err)
	}
	_, err = r.SendEstimate(ctx, Send{ResumeToken: m["receive_resume_token"]})
	captureErr(t, "stderr-send-t-gone.txt", err, ErrResumeTokenInvalid)
}

// TestZFSCommitSnapshots runs the commit channel program against the real
// zfs: snapshots, their properties and bookmarks appear together, and a
// commit that fails at any check leaves nothing behind.
func TestZFSCommitSnapshots(t *testing.T) {
	r := requireZFS(t)
	ctx := context.Background()
	scratchPool(t, r, "cp", 128<<20)
	for _, v := range []string{"cp/a", "cp/b"} {
		if err := r.CreateVolume(ctx, v, 8<<20, 16<<10, true); err != nil {
			t.Fatal(err)
		}
	}
	props := map[string]string{"dmsnap:origin": "vg0/db", "dmsnap:seq": "1"}
	err := r.CommitSnapshots(ctx,
		SnapshotSet{Snapshot: "cp/a@s1", Bookmark: "cp/a#s1", Props: props},
		SnapshotSet{Snapshot: "cp/b@s1", Bookmark: "cp/b#s1"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := r.Get(ctx, "cp/a@s1", "dmsnap:origin", "dmsnap:seq", "guid", "createtxg")
	if err != nil {
		t.Fatal(err)
	}
	if got["dmsnap:origin"] != "vg0/db" || got["dmsnap:seq"] != "1" {
		t.Errorf("properties of cp/a@s1: %v", got)
	}
	bm, err := r.Get(ctx, "cp/a#s1", "guid", "createtxg")
	if err != nil {
		t.Fatal(err)
	}
	if bm["guid"] != got["guid"] || bm["createtxg"] != got["createtxg"] {
		t.Errorf("bookmark %v is not of snapshot %v", bm, got)
	}
	b, err := r.Get(ctx, "cp/b@s1", "createtxg")
	if err != nil {
		t.Fatal(err)
	}
	if b["createtxg"] != got["createtxg"] {
		t.Errorf("cp/a@s1 in txg %s, cp/b@s1 in txg %s: not one transaction group", got["createtxg"], b["createtxg"])
	}

	// Each failure: the second set's snapshot exists, or its bookmark does;
	// the first set's snapshot must not appear either.
	for name, tt := range map[string]struct {
		sets []SnapshotSet
		want error
	}{
		"snapshot exists": {[]SnapshotSet{{Snapshot: "cp/a@s2", Props: props}, {Snapshot: "cp/b@s1"}}, ErrExists},
		"bookmark exists": {[]SnapshotSet{{Snapshot: "cp/a@s2", Props: props}, {Snapshot: "cp/b@s2", Bookmark: "cp/b#s1"}}, ErrExists},
		"no such dataset": {[]SnapshotSet{{Snapshot: "cp/a@s2"}, {Snapshot: "cp/nothere@s2"}}, ErrDatasetNotFound},
	} {
		err := r.CommitSnapshots(ctx, tt.sets...)
		if !errors.Is(err, tt.want) {
			t.Errorf("%s: got %v, want %v", name, err, tt.want)
		}
		t.Logf("%s: %v", name, err)
		for _, s := range []string{"cp/a@s2", "cp/b@s2"} {
			if _, err := r.Get(ctx, s, "guid"); err == nil {
				t.Errorf("%s: %s exists after a failed commit", name, s)
			}
		}
	}
}
