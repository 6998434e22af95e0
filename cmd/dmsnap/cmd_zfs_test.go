package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/dmsnap/dmsnap/zfs"
)

// fakeZFSReply is one scripted zfs result.
type fakeZFSReply struct {
	stdout, stderr string
	fail           error // nil: exit 0
	noRead         bool  // exit without reading stdin
}

func zok(stdout string) fakeZFSReply   { return fakeZFSReply{stdout: stdout} }
func zfail(stderr string) fakeZFSReply { return fakeZFSReply{stderr: stderr, fail: errFakeZFSExit} }

var errFakeZFSExit = errors.New("exit status 1")

// fakeZFS is a zfs.Executor answering from a script keyed by the whole
// command line ("zfs list ...", "ssh host zfs receive ..."). Each key has
// a queue of replies; the last one repeats. A command not in the script
// fails the test. No lock is held while a command reads stdin or writes
// stdout, so a send and a receive can run at once.
type fakeZFS struct {
	t      *testing.T
	mu     sync.Mutex
	script map[string][]fakeZFSReply
	calls  []string
	stdin  map[string]string
}

func newFakeZFS(t *testing.T) *fakeZFS {
	return &fakeZFS{t: t, script: map[string][]fakeZFSReply{}, stdin: map[string]string{}}
}

func (f *fakeZFS) on(key string, r ...fakeZFSReply) *fakeZFS {
	f.script[key] = append(f.script[key], r...)
	return f
}

func (f *fakeZFS) Run(_ context.Context, name string, args []string, stdin io.Reader, stdout io.Writer) ([]byte, error) {
	key := strings.Join(append([]string{name}, args...), " ")
	f.mu.Lock()
	f.calls = append(f.calls, key)
	q, ok := f.script[key]
	var r fakeZFSReply
	if ok {
		r = q[0]
		if len(q) > 1 {
			f.script[key] = q[1:]
		}
	}
	f.mu.Unlock()
	if !ok {
		f.t.Errorf("unexpected command %q", key)
		return []byte("unexpected command"), errFakeZFSExit
	}
	if stdin != nil && !r.noRead {
		b, _ := io.ReadAll(stdin)
		f.mu.Lock()
		f.stdin[key] = string(b)
		f.mu.Unlock()
	}
	if stdout != nil && r.stdout != "" {
		if _, err := io.WriteString(stdout, r.stdout); err != nil {
			return nil, err
		}
	}
	return []byte(r.stderr), r.fail
}

// mutations returns the commands that change something or move data.
func (f *fakeZFS) mutations() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, c := range f.calls {
		w := strings.Fields(c)
		if w[0] == "ssh" {
			w = w[len(sshVia("")):]
		}
		switch w[1] {
		case "receive", "destroy", "bookmark", "set", "inherit", "snapshot", "rollback":
			out = append(out, c)
		case "send":
			if w[2] != "-nvP" {
				out = append(out, c)
			}
		}
	}
	return out
}

func (f *fakeZFS) called(key string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Contains(f.calls, key)
}

// index returns the position of key in the calls, -1 if absent.
func (f *fakeZFS) index(key string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Index(f.calls, key)
}

func zfsListKey(ds string) string { return "zfs " + strings.Join(zfs.ListArgs(ds), " ") }
func zfsGetKey(name string, props ...string) string {
	return "zfs get -Hp -o property,value " + strings.Join(props, ",") + " " + name
}
func zfsPropsKey(ds string) string { return "zfs get -Hp -s local -o property,value all " + ds }

// zpt is one zlisting line: name (with @ or #), guid, createtxg, creation.
type zpt struct {
	name      string
	guid, txg uint64
	creation  int64
}

func zlisting(pts ...zpt) string {
	var b strings.Builder
	for _, p := range pts {
		kind := "snapshot"
		if strings.Contains(p.name, "#") {
			kind = "bookmark"
		}
		if p.creation == 0 {
			p.creation = 1795392400 + int64(p.txg)
		}
		fmt.Fprintf(&b, "%s\t%d\t%d\t%d\t%s\n", p.name, p.guid, p.txg, p.creation, kind)
	}
	return b.String()
}

const (
	zfsVersion232 = `{"output_version":{"command":"zfs version","vers_major":0,"vers_minor":1},"zfs_version":{"userland":"zfs-2.3.2-2~bpo12+2","kernel":"zfs-kmod-2.3.2-2~bpo12+2"}}`
	zfsVersion231 = `{"output_version":{"command":"zfs version","vers_major":0,"vers_minor":1},"zfs_version":{"userland":"zfs-2.3.2-2~bpo12+2","kernel":"zfs-kmod-2.3.1-1"}}`
)

func fakeZFSEnv(f *fakeZFS) zfsEnv {
	return zfsEnv{
		local:  &zfs.Runner{Exec: f},
		remote: func(dest string) *zfs.Runner { return &zfs.Runner{Exec: f, Via: sshVia(dest)} },
	}
}

// zfsTestGopts captures stdout and stderr; locks go to a temporary directory.
func zfsTestGopts(t *testing.T, jsonOut bool) (*globalOptions, *bytes.Buffer, *bytes.Buffer) {
	var out, errb bytes.Buffer
	return &globalOptions{JSON: jsonOut, LockDir: t.TempDir(), stdout: &out, stderr: &errb}, &out, &errb
}

// Names of the dmsnap snapshots s1..s5 of tank/vol.
func zdn(i int) string { return fmt.Sprintf("dmsnap-20261122T1015%02dZ-%06d", i, i) }

// TestZFSListOrderIgnoresNamesAndCreation: rows come in createtxg order
// although the names sort the other way and creation times are reversed
// and duplicated; flags mark dmsnap's points, #dmsnap-last-sent and the
// replication bases (the last-sent guid and a recorded one).
func TestZFSListOrderIgnoresNamesAndCreation(t *testing.T) {
	f := newFakeZFS(t)
	// zz-old is the oldest by createtxg, a-new the newest; creation says
	// the opposite (and ties).
	f.on(zfsListKey("tank/vol"), zok(zlisting(
		zpt{"tank/vol@a-new", 30, 90, 1000},
		zpt{"tank/vol@" + zdn(2), 20, 50, 2000},
		zpt{"tank/vol#dmsnap-last-sent", 20, 50, 2000},
		zpt{"tank/vol#" + zdn(2), 20, 50, 2000},
		zpt{"tank/vol@zz-old", 10, 12, 3000},
	)))
	f.on(zfsPropsKey("tank/vol"), zok("volsize\t1048576\ndmsnap:sent-0011223344556677\t10 host1:backup/vol\n"))
	gopts, out, _ := zfsTestGopts(t, false)
	if err := runZFSList(context.Background(), gopts, fakeZFSEnv(f), "tank/vol"); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n")[1:6] {
		w := strings.Fields(l)
		got = append(got, w[1]+" "+w[2]+" "+w[3]+" "+w[5])
	}
	want := []string{
		"tank/vol@zz-old 10 12 base",
		"tank/vol@" + zdn(2) + " 20 50 dmsnap,base",
		"tank/vol#" + zdn(2) + " 20 50 dmsnap,base",
		"tank/vol#dmsnap-last-sent 20 50 dmsnap,last-sent,base",
		"tank/vol@a-new 30 90 -",
	}
	if !slices.Equal(got, want) {
		t.Errorf("rows\n%s\nwant\n%s\n(output %s)", strings.Join(got, "\n"), strings.Join(want, "\n"), out)
	}
	if !strings.Contains(out.String(), "replication base: guid 10 (createtxg 12), sent to host1:backup/vol") {
		t.Errorf("no recorded base line in %s", out)
	}

	gopts, out, _ = zfsTestGopts(t, true)
	if err := runZFSList(context.Background(), gopts, fakeZFSEnv(f), "tank/vol"); err != nil {
		t.Fatal(err)
	}
	var res struct {
		Points []struct {
			Name      string `json:"name"`
			GUID      string `json:"guid"`
			CreateTXG uint64 `json:"createtxg"`
			LastSent  bool   `json:"last_sent"`
		} `json:"points"`
		Bases []replicationBase `json:"replication_bases"`
	}
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if len(res.Points) != 5 || res.Points[0].Name != "tank/vol@zz-old" || res.Points[0].GUID != "10" || !res.Points[3].LastSent {
		t.Errorf("json points %+v", res.Points)
	}
	if len(res.Bases) != 2 || res.Bases[0].GUID != 10 || res.Bases[1].GUID != 20 {
		t.Errorf("json bases %+v", res.Bases)
	}
}

func TestZFSListErrors(t *testing.T) {
	f := newFakeZFS(t)
	f.on(zfsListKey("tank/nope"), zfail("cannot open 'tank/nope': dataset does not exist\n"))
	f.on(zfsListKey("tank/nomod"), zfail("The ZFS modules cannot be auto-loaded.\nTry running 'modprobe zfs' as root to manually load them.\n"))
	gopts, _, _ := zfsTestGopts(t, false)
	err := runZFSList(context.Background(), gopts, fakeZFSEnv(f), "tank/nope")
	if !errors.Is(err, zfs.ErrDatasetNotFound) || exitCode(err) != exitError {
		t.Errorf("missing dataset: %v", err)
	}
	err = runZFSList(context.Background(), gopts, fakeZFSEnv(f), "tank/nomod")
	if !errors.Is(err, zfs.ErrNoModule) || !strings.Contains(err.Error(), "kernel module is not loaded") {
		t.Errorf("no module: %v", err)
	}
	notInstalled := zfsEnv{local: &zfs.Runner{ZFS: "/nonexistent/zfs"}}
	err = runZFSList(context.Background(), gopts, notInstalled, "tank/vol")
	if !errors.Is(err, zfs.ErrZFSNotInstalled) || !strings.Contains(err.Error(), "zfs is not installed") {
		t.Errorf("not installed: %v", err)
	}
	if err := runZFSList(context.Background(), gopts, fakeZFSEnv(f), "tank/vol@s1"); exitCode(err) != exitUsage {
		t.Errorf("snapshot name: %v", err)
	}
}

// prunePoints: tank/vol with dmsnap snapshots s1..s5 (txg 10..50), their
// bookmarks, a foreign snapshot, and #dmsnap-last-sent at s2.
func zfsPrunePoints() string {
	var pts []zpt
	for i := 1; i <= 5; i++ {
		pts = append(pts, zpt{"tank/vol@" + zdn(i), uint64(100 + i), uint64(10 * i), 0},
			zpt{"tank/vol#" + zdn(i), uint64(100 + i), uint64(10 * i), 0})
	}
	pts = append(pts, zpt{"tank/vol@manual", 99, 5, 0}, zpt{"tank/vol#dmsnap-last-sent", 102, 20, 0})
	return zlisting(pts...)
}

// TestZFSPruneProtectsBase: with #dmsnap-last-sent at s2, --keep 1 destroys
// only s1 (older than the base), never s2 or anything newer, the foreign
// @manual or the last-sent bookmark; --keep-bookmarks 0 adds #s1 only.
// --dry-run runs no destroy. A recorded base older than last-sent (s1
// for another target) protects s1 too.
func TestZFSPruneProtectsBase(t *testing.T) {
	ctx := context.Background()
	f := newFakeZFS(t)
	f.on(zfsListKey("tank/vol"), zok(zfsPrunePoints()))
	f.on(zfsPropsKey("tank/vol"), zok(""))
	f.on("zfs destroy tank/vol@"+zdn(1), zok(""))
	f.on("zfs destroy tank/vol#"+zdn(1), zok(""))

	gopts, out, _ := zfsTestGopts(t, false)
	if err := runZFSPrune(ctx, gopts, fakeZFSEnv(f), zfsPruneOptions{Dataset: "tank/vol", Keep: 1, KeepBookmarks: -1, DryRun: true}); err != nil {
		t.Fatal(err)
	}
	if m := f.mutations(); len(m) != 0 {
		t.Errorf("dry run ran %q", m)
	}
	if !strings.Contains(out.String(), "would destroy snapshot tank/vol@"+zdn(1)) || strings.Count(out.String(), "would destroy") != 1 {
		t.Errorf("dry run output:\n%s", out)
	}

	gopts, out, _ = zfsTestGopts(t, false)
	if err := runZFSPrune(ctx, gopts, fakeZFSEnv(f), zfsPruneOptions{Dataset: "tank/vol", Keep: 1, KeepBookmarks: 0}); err != nil {
		t.Fatal(err)
	}
	want := []string{"zfs destroy tank/vol@" + zdn(1), "zfs destroy tank/vol#" + zdn(1)}
	if m := f.mutations(); !slices.Equal(m, want) {
		t.Errorf("destroyed %q, want %q", m, want)
	}
	if !strings.Contains(out.String(), "keeping replication base guid 102 (createtxg 20, #dmsnap-last-sent)") {
		t.Errorf("output:\n%s", out)
	}

	// Another target's record at s1: nothing older than s1 is ours.
	f2 := newFakeZFS(t)
	f2.on(zfsListKey("tank/vol"), zok(zfsPrunePoints()))
	f2.on(zfsPropsKey("tank/vol"), zok("dmsnap:sent-00aa\t101 backup/vol\n"))
	gopts, out, _ = zfsTestGopts(t, true)
	if err := runZFSPrune(ctx, gopts, fakeZFSEnv(f2), zfsPruneOptions{Dataset: "tank/vol", Keep: 1, KeepBookmarks: 0}); err != nil {
		t.Fatal(err)
	}
	if m := f2.mutations(); len(m) != 0 {
		t.Errorf("destroyed %q with a base at s1", m)
	}
	var res jsonZFSPrune
	if err := json.Unmarshal(out.Bytes(), &res); err != nil || len(res.Protected) != 2 || len(res.Destroy) != 0 || *res.KeepBookmarks != 0 {
		t.Errorf("json %s: %v", out, err)
	}
}

func TestZFSPruneRefusals(t *testing.T) {
	ctx := context.Background()
	// A record whose guid is gone: the chain to that target is broken;
	// nothing is pruned and the message says how to drop the record.
	f := newFakeZFS(t)
	f.on(zfsListKey("tank/vol"), zok(zfsPrunePoints()))
	f.on(zfsPropsKey("tank/vol"), zok("dmsnap:sent-00aa\t424242 backup/old\n"))
	gopts, _, _ := zfsTestGopts(t, false)
	err := runZFSPrune(ctx, gopts, fakeZFSEnv(f), zfsPruneOptions{Dataset: "tank/vol", Keep: 1, KeepBookmarks: -1})
	if !errors.Is(err, zfs.ErrDatasetNotFound) || !strings.Contains(err.Error(), "zfs inherit dmsnap:sent-00aa tank/vol") {
		t.Errorf("broken record: %v", err)
	}
	if m := f.mutations(); len(m) != 0 {
		t.Errorf("ran %q", m)
	}

	// Usage errors, through the command line (nothing reaches zfs).
	e := newCLIEnv(t)
	for _, args := range [][]string{
		{"zfs", "prune", "tank/vol"},
		{"zfs", "prune", "tank/vol", "--keep", "0"},
		{"zfs", "prune", "tank/vol", "--keep", "-2"},
		{"zfs", "prune", "tank/vol", "--keep", "2", "--keep-bookmarks", "-1"},
		{"zfs", "prune", "tank/vol@s", "--keep", "2"},
		{"zfs", "prune", "--keep", "2"},
		{"zfs", "ls"},
		{"zfs", "ls", "-bad"},
		{"zfs", "frob"},
	} {
		if code, _, errs := e.run(args...); code != exitUsage {
			t.Errorf("%q: exit %d (%s), want 2", args, code, errs)
		}
	}
}

// A failed destroy after others succeeded is a partial result (exit 3).
func TestZFSPrunePartial(t *testing.T) {
	f := newFakeZFS(t)
	var pts []zpt
	for i := 1; i <= 3; i++ {
		pts = append(pts, zpt{"tank/vol@" + zdn(i), uint64(100 + i), uint64(10 * i), 0})
	}
	f.on(zfsListKey("tank/vol"), zok(zlisting(pts...)))
	f.on(zfsPropsKey("tank/vol"), zok(""))
	f.on("zfs destroy tank/vol@"+zdn(1), zok(""))
	f.on("zfs destroy tank/vol@"+zdn(2), zfail("cannot destroy snapshot tank/vol@"+zdn(2)+": it's being held. Run 'zfs holds -r tank/vol@"+zdn(2)+"' to see holders.\n"))
	gopts, _, _ := zfsTestGopts(t, false)
	err := runZFSPrune(context.Background(), gopts, fakeZFSEnv(f), zfsPruneOptions{Dataset: "tank/vol", Keep: 1, KeepBookmarks: -1})
	if exitCode(err) != exitPartial || !errors.Is(err, zfs.ErrBusy) {
		t.Errorf("err %v (exit %d), want partial and ErrBusy", err, exitCode(err))
	}
}

// The default environment runs zfs from $PATH here and ssh for --to-host,
// in batch mode: a password prompt would hang replicate under cron.
func TestDefaultZFSEnv(t *testing.T) {
	gopts, _, _ := zfsTestGopts(t, false)
	env := defaultZFSEnv(gopts)
	if env.local.Via != nil || env.isTTY {
		t.Errorf("local %+v tty %v", env.local, env.isTTY)
	}
	want := []string{"ssh", "-o", "BatchMode=yes", "root@backup1"}
	if r := env.remote("root@backup1"); !slices.Equal(r.Via, want) {
		t.Errorf("remote via %q, want %q", r.Via, want)
	}
	// runReplicate shows the remote receive behind the same prefix.
	if got := sshVia("root@backup1"); !slices.Equal(got, want) {
		t.Errorf("receive via %q, want %q", got, want)
	}
}
