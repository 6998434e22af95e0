package lvm2

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// lvsJSON renders rows as LVM2's JSON report; each row starts from a
// linear 64 MiB LV "origin" of vg0 and overrides fields.
func lvsJSON(t *testing.T, rows ...map[string]string) string {
	t.Helper()
	var out []map[string]string
	for _, over := range rows {
		row := map[string]string{
			"vg_name": "vg0", "lv_name": "origin", "lv_uuid": "u", "lv_attr": "owi-a-s---",
			"lv_size": "67108864", "vg_extent_size": "4194304", "lv_layout": "linear", "segtype": "linear",
			"origin": "", "origin_size": "", "snap_percent": "", "seg_monitor": "", "lv_tags": "",
			"lv_dm_path": "/dev/mapper/vg0-origin", "lv_kernel_major": "254", "lv_kernel_minor": "0", "chunk_size": "0",
		}
		for k, v := range over {
			row[k] = v
		}
		out = append(out, row)
	}
	b, err := json.Marshal(map[string]any{"report": []any{map[string]any{"lv": out}}})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func vgsJSON(freeExtents uint64) string {
	return fmt.Sprintf(`{"report":[{"vg":[{"vg_name":"vg0","vg_uuid":"x","vg_size":"264241152","vg_free":"%d","vg_extent_size":"4194304","vg_extent_count":"63","vg_free_count":"%d","lv_count":"1","snap_count":"0","vg_tags":""}]}]}`,
		freeExtents*4194304, freeExtents)
}

var snapRow = map[string]string{"lv_name": "cur", "lv_attr": "swi-a-s---", "lv_size": "12582912", "origin": "origin",
	"origin_size": "67108864", "snap_percent": "0.10", "lv_tags": "dmsnap-cursor", "segtype": "snapshot",
	"lv_dm_path": "/dev/mapper/vg0-cur", "chunk_size": "8192"}

func TestRunnerArgvAndEnv(t *testing.T) {
	f := &fakeExec{results: []fakeResult{{prefix: "vgs", stdout: vgsJSON(10)}}}
	r := &Runner{LVM: "/opt/lvm", Exec: f, Env: []string{"LVM_SYSTEM_DIR=/x"}, Config: "activation{udev_sync=0}"}
	if _, err := r.VG(context.Background(), "vg0"); err != nil {
		t.Fatal(err)
	}
	c := f.calls[0]
	want := []string{"vgs", "--reportformat", "json", "--units", "b", "--nosuffix", "-o", vgFields, "vg0", "--config", "activation{udev_sync=0}"}
	if c.name != "/opt/lvm" || !slices.Equal(c.args, want) {
		t.Errorf("ran %s %q, want /opt/lvm %q", c.name, c.args, want)
	}
	if !slices.Contains(c.env, "LVM_SUPPRESS_FD_WARNINGS=1") || !slices.Contains(c.env, "LVM_SYSTEM_DIR=/x") {
		t.Errorf("env %q", c.env)
	}
	if _, _, err := r.Run(context.Background(), "sh", []string{"-c", "true"}, ""); err == nil {
		t.Error("Run accepted a command that is not LVM2's")
	}
}

func TestSnapshotArgs(t *testing.T) {
	o := Path{VG: "vg0", LV: "origin"}
	args, err := snapshotArgs(o, SnapshotOptions{Name: "cur", COWBytes: 12 << 20, ChunkBytes: 8192, ReadOnly: true, Tags: []string{"x"}})
	if err != nil {
		t.Fatal(err)
	}
	want := "--snapshot --yes --name cur --size 12582912b --chunksize 8k --permission r --addtag dmsnap-cursor --addtag x vg0/origin"
	if got := strings.Join(args, " "); got != want {
		t.Errorf("argv %q\nwant %q", got, want)
	}
	args, err = snapshotArgs(o, SnapshotOptions{Name: "cur", COWExtents: 3})
	if err != nil || !slices.Contains(args, "--extents") || slices.Contains(args, "--chunksize") {
		t.Errorf("extents argv %q, %v", args, err)
	}
	for _, tc := range []struct {
		o    SnapshotOptions
		want error
		text string
	}{
		{SnapshotOptions{Name: "cur", COWBytes: 1, Overflow: true}, ErrUnsupported, "PO"},
		{SnapshotOptions{Name: "cur", COWBytes: 1, Discard: true}, ErrUnsupported, "discard"},
		{SnapshotOptions{Name: "snapshot0", COWBytes: 1}, ErrInvalidName, "reserved"},
		{SnapshotOptions{Name: "cur"}, nil, "COW size is required"},
		{SnapshotOptions{Name: "cur", COWBytes: 1, ChunkBytes: 3000}, nil, "power of two"},
		{SnapshotOptions{Name: "cur", COWBytes: 1, ChunkBytes: 1 << 20}, nil, "power of two"},
		{SnapshotOptions{Name: "cur", COWBytes: 1, Tags: []string{"bad tag"}}, ErrInvalidName, "tag"},
	} {
		_, err := snapshotArgs(o, tc.o)
		if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) || !strings.Contains(err.Error(), tc.text) {
			t.Errorf("%+v: %v, want %v containing %q", tc.o, err, tc.want, tc.text)
		}
	}
}

func TestCreateSnapshot(t *testing.T) {
	ctx := context.Background()
	f := &fakeExec{results: []fakeResult{
		{prefix: "lvs --reportformat json --units b --nosuffix -a -o " + lvFields + " vg0", stdout: lvsJSON(t, nil, snapRow)},
		{prefix: "vgs", stdout: vgsJSON(3)},
		{prefix: "lvcreate"},
	}}
	r := &Runner{Exec: f}
	lv, err := r.CreateSnapshot(ctx, Path{VG: "vg0", LV: "origin"}, SnapshotOptions{Name: "cur", COWBytes: 12 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if lv.Name != "cur" || lv.Extents != 3 || !lv.HasTag(CursorTag) {
		t.Errorf("got %+v", lv)
	}
	if c := f.commands(); len(c) != 4 || !strings.HasPrefix(c[2], "lvcreate --snapshot") {
		t.Errorf("commands %q", c)
	}

	// One byte more than 3 extents: refused before lvcreate, amount named.
	f.calls = nil
	_, err = r.CreateSnapshot(ctx, Path{VG: "vg0", LV: "origin"}, SnapshotOptions{Name: "cur", COWBytes: 12<<20 + 1})
	if !errors.Is(err, ErrNoSpace) || !strings.Contains(err.Error(), "needs 4 extents") || !strings.Contains(err.Error(), "1 more extents (4194304 bytes) needed") {
		t.Errorf("no space: %v", err)
	}
	for _, c := range f.commands() {
		if strings.HasPrefix(c, "lvcreate") {
			t.Errorf("lvcreate ran although the VG is full: %q", c)
		}
	}

	// A thin origin is refused naming its segment type.
	f = &fakeExec{results: []fakeResult{{prefix: "lvs", stdout: lvsJSON(t, map[string]string{"segtype": "thin", "lv_attr": "Vwi-a-tz--"})}}}
	r = &Runner{Exec: f}
	_, err = r.CreateSnapshot(ctx, Path{VG: "vg0", LV: "origin"}, SnapshotOptions{Name: "cur", COWBytes: 4096})
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), `"thin"`) {
		t.Errorf("thin origin: %v", err)
	}
	if len(f.calls) != 1 {
		t.Errorf("commands %q", f.commands())
	}
}

func TestOwnership(t *testing.T) {
	ctx := context.Background()
	untagged := map[string]string{}
	for k, v := range snapRow {
		untagged[k] = v
	}
	untagged["lv_tags"] = "other,tags"
	for _, op := range []struct {
		name string
		run  func(r *Runner, allow bool) error
		verb string
	}{
		{"Remove", func(r *Runner, allow bool) error { return r.Remove(ctx, Path{VG: "vg0", LV: "cur"}, allow) }, "lvremove --yes vg0/cur"},
		{"Extend", func(r *Runner, allow bool) error { return r.Extend(ctx, Path{VG: "vg0", LV: "cur"}, 4096, allow) }, "lvextend --size +4096b vg0/cur"},
		{"Rename", func(r *Runner, allow bool) error { return r.Rename(ctx, Path{VG: "vg0", LV: "cur"}, "new", allow) }, "lvrename vg0 cur new"},
		{"Merge", func(r *Runner, allow bool) error {
			_, err := r.Merge(ctx, Path{VG: "vg0", LV: "cur"}, allow)
			return err
		}, "lvconvert --merge --yes --interval 1 vg0/cur"},
	} {
		f := &fakeExec{results: []fakeResult{{prefix: "lvs", stdout: lvsJSON(t, untagged)}, {prefix: "vgs", stdout: vgsJSON(5)}, {prefix: op.verb}}}
		if err := op.run(&Runner{Exec: f}, false); !errors.Is(err, ErrNotOwned) || !strings.Contains(err.Error(), "@dmsnap-cursor") {
			t.Errorf("%s of an untagged snapshot: %v, want ErrNotOwned", op.name, err)
		}
		if c := f.commands(); len(c) != 1 {
			t.Errorf("%s refused but ran %q", op.name, c)
		}
		f.calls = nil
		if err := op.run(&Runner{Exec: f}, true); err != nil {
			t.Errorf("%s allowed: %v", op.name, err)
		}
		if c := f.commands(); c[len(c)-1] != op.verb {
			t.Errorf("%s ran %q, want last %q", op.name, c, op.verb)
		}
	}
	// Not a snapshot at all.
	if err := CheckOwned(LV{VG: "vg0", Name: "origin", Attr: "owi-a-s---", Tags: []string{CursorTag}}, true); !errors.Is(err, ErrUnsupported) {
		t.Errorf("CheckOwned of an origin: %v", err)
	}
}

func TestCOWMaxBytes(t *testing.T) {
	// lvcreate -s -L 1g of a 64 MiB origin (4 KiB chunks) reduces the COW
	// to 17 extents of 4 MiB (68 MiB): 16384 data, 65 metadata and one
	// header chunk fit in 16.06 extents.
	if got, want := cowMaxBytes(64<<20, 0), uint64(1+65+16384)*4096; got != want {
		t.Errorf("cowMaxBytes(64 MiB, 4 KiB) = %d, want %d", got, want)
	}
	// 8 KiB chunks: 8192 data chunks, 512 exceptions per area: 17 metadata.
	if got, want := cowMaxBytes(64<<20, 8192), uint64(1+17+8192)*8192; got != want {
		t.Errorf("cowMaxBytes(64 MiB, 8 KiB) = %d, want %d", got, want)
	}
	// Exactly full last area: one more metadata chunk as terminator.
	if got, want := cowMaxBytes(256*4096, 4096), uint64(1+2+256)*4096; got != want {
		t.Errorf("cowMaxBytes(256 chunks) = %d, want %d", got, want)
	}
}

func TestMergeResult(t *testing.T) {
	ctx := context.Background()
	deferred := "  Delaying merge since origin is open.\n  Merging of snapshot vg0/cur will occur on next activation of vg0/origin.\n"
	for _, tc := range []struct {
		stdout  string
		pending bool
	}{
		{"  Merging of volume vg0/cur started.\n  vg0/origin: Merged: 100.00%\n", false},
		{deferred, true},
	} {
		f := &fakeExec{results: []fakeResult{{prefix: "lvs", stdout: lvsJSON(t, snapRow)}, {prefix: "lvconvert", stdout: tc.stdout}}}
		res, err := (&Runner{Exec: f}).Merge(ctx, Path{VG: "vg0", LV: "cur"}, false)
		if err != nil || res.Pending != tc.pending {
			t.Errorf("%q: %+v, %v; want pending %v", tc.stdout, res, err, tc.pending)
		}
	}
	merging := map[string]string{}
	for k, v := range snapRow {
		merging[k] = v
	}
	merging["lv_attr"] = "Swi-a-s---"
	f := &fakeExec{results: []fakeResult{{prefix: "lvs", stdout: lvsJSON(t, merging)}}}
	if _, err := (&Runner{Exec: f}).Merge(ctx, Path{VG: "vg0", LV: "cur"}, false); !errors.Is(err, ErrMerging) || len(f.calls) != 1 {
		t.Errorf("merge of a merging snapshot: %v after %q", err, f.commands())
	}
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		stderr string
		want   error
	}{
		{`  Volume group "vgx" not found` + "\n  Cannot process volume group vgx\n", ErrNotFound},
		{`  Failed to find logical volume "vg0/nosuch"` + "\n", ErrNotFound},
		{`  Logical Volume "other" already exists in volume group "vg0"` + "\n", ErrExists},
		{`  Volume group "vg0" has insufficient free space (36 extents): 256 required.` + "\n", ErrNoSpace},
		{"  Insufficient free space: 256 extents needed, but only 36 available\n", ErrNoSpace},
		{`  Logical volume vg0/origin contains a filesystem in use.` + "\n", ErrBusy},
		{`  Can't remove open logical volume "cur".` + "\n", ErrBusy},
		{"  Giving up waiting for lock.\n", ErrLocked},
		{"  Snapshot vg0/cur is already merging.\n", ErrMerging},
		{"  something else\n", nil},
	} {
		got := classify([]byte(tc.stderr))
		if (tc.want == nil && got != nil) || (tc.want != nil && !errors.Is(got, tc.want)) {
			t.Errorf("classify(%q) = %v, want %v", tc.stderr, got, tc.want)
		}
	}
	e := newCommandError("lvs", nil, "vg0", nil, exec.ErrNotFound)
	if !errors.Is(e, ErrNotInstalled) || !errors.Is(e, exec.ErrNotFound) {
		t.Errorf("missing program: %v", e)
	}
	e = newCommandError("lvremove", []string{"--yes"}, "vg0/cur", []byte(`  Can't remove open logical volume "cur".`), errors.New("exit status 5"))
	if got, want := e.Error(), `lvremove vg0/cur: logical volume in use (stderr: "Can't remove open logical volume \"cur\".")`; got != want {
		t.Errorf("Error() = %s\nwant %s", got, want)
	}
	if _, err := (&Runner{Exec: &fakeExec{results: []fakeResult{{prefix: "lvs", err: context.Canceled}}}}).LVs(context.Background(), ""); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}
