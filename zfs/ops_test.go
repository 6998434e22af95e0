package zfs

import (
	"context"
	"errors"
	"testing"
)

const volGet = "zfs get -Hp -o property,value type,guid,volsize,volblocksize,receive_resume_token "

func TestRunnerVolume(t *testing.T) {
	f := newFake(t, map[string]reply{
		volGet + "tank/vol":   {stdout: "type\tvolume\nguid\t11548734511447652270\nvolsize\t67108864\nvolblocksize\t16384\nreceive_resume_token\t-\n"},
		volGet + "backup/vol": {stdout: "type\tvolume\nguid\t2\nvolsize\t67108864\nvolblocksize\t16384\nreceive_resume_token\t1-e604ea4bf-e0-789c63a2\n"},
		volGet + "tank/fs":    {stdout: "type\tfilesystem\nguid\t3\nvolsize\t-\nvolblocksize\t-\nreceive_resume_token\t-\n"},
		volGet + "tank/nope":  {stderr: readTestdata(t, "zfs-2.3.2-stderr-list-missing.txt"), err: errExit1},
		volGet + "tank/odd":   {stdout: "type\tvolume\nguid\t3\nvolsize\t64M\nvolblocksize\t16384\nreceive_resume_token\t-\n"},
		volGet + "tank/short": {stdout: "type\tvolume\nguid\t3\n"},
	})
	r := &Runner{Exec: f}
	ctx := context.Background()
	v, err := r.Volume(ctx, "tank/vol")
	if err != nil || v != (VolumeInfo{Name: "tank/vol", GUID: 11548734511447652270, SizeBytes: 64 << 20, VolBlockSizeBytes: 16384}) {
		t.Errorf("tank/vol: %+v %v", v, err)
	}
	if v, err := r.Volume(ctx, "backup/vol"); err != nil || v.ResumeToken != "1-e604ea4bf-e0-789c63a2" {
		t.Errorf("resume token: %+v %v", v, err)
	}
	for ds, want := range map[string]error{"tank/fs": ErrNotAZvol, "tank/nope": ErrDatasetNotFound, "tank/odd": ErrSyntax, "tank/short": ErrSyntax} {
		if _, err := r.Volume(ctx, ds); !errors.Is(err, want) {
			t.Errorf("%s: %v, want %v", ds, err, want)
		}
	}
}

func TestRunnerMutations(t *testing.T) {
	missingSnap := readTestdata(t, "zfs-2.3.2-stderr-destroy-missing-snapshot.txt")
	missingBook := readTestdata(t, "zfs-2.3.2-stderr-destroy-missing-bookmark.txt")
	f := newFake(t, map[string]reply{
		"zfs create -s -b 16384 -V 67108864 backup/vol":         {},
		"zfs create -s -o dmsnap:x=a/b -b 16384 -V 4096 tank/p": {},
		"zfs create -b 16384 -V 67108864 tank/vol":              {stderr: readTestdata(t, "zfs-2.3.2-stderr-create-exists.txt"), err: errExit1},
		"zfs snapshot " + snap3:                                 {},
		"zfs bookmark " + snap3 + " " + BookmarkFor(snap3):      {},
		"zfs destroy tank/vol#dmsnap-last-sent":                 {stderr: missingBook, err: errExit1},
		"zfs bookmark " + snap3 + " tank/vol#dmsnap-last-sent":  {},
		"zfs destroy " + snap1:                                  {stderr: missingSnap, err: errExit1},
		"zfs destroy " + snap2:                                  {stderr: readTestdata(t, "zfs-2.3.2-stderr-destroy-busy.txt"), err: errExit1},
		"zfs rollback " + snap3:                                 {},
		"zfs clone -o readonly=on " + snap3 + " tank/vol.r":     {},
		"zfs get -Hp -o property,value origin tank/vol.r":       {stdout: "origin\t" + snap3 + "\n"},
		"zfs destroy tank/vol.r":                                {},
		"zfs get -Hp -o property,value origin tank/vol":         {stdout: "origin\t-\n"},
		"zfs get -Hp -o property,value origin tank/gone":        {stderr: "cannot open 'tank/gone': dataset does not exist\n", err: errExit1},
		"zfs clone " + snap3 + " tank/vol":                      {stderr: readTestdata(t, "zfs-2.3.2-stderr-create-exists.txt"), err: errExit1},
		"zfs get -Hp -o property,value guid " + snap3:           {stdout: "guid\t17706119220354061411\n"},
		"zfs get -Hp -o property,value guid " + snap1:           {stderr: "cannot open '" + snap1 + "': dataset does not exist\n", err: errExit1},
	})
	r := &Runner{Exec: f}
	ctx := context.Background()
	if err := r.CreateVolume(ctx, "backup/vol", 64<<20, 16384, true); err != nil {
		t.Error(err)
	}
	if err := r.CreateVolume(ctx, "tank/vol", 64<<20, 16384, false); !errors.Is(err, ErrExists) {
		t.Errorf("create existing: %v", err)
	}
	if err := r.CreateVolume(ctx, "tank/p", 4096, 16384, true, "dmsnap:x=a/b"); err != nil {
		t.Errorf("create with a property: %v", err)
	}
	if err := r.CreateVolume(ctx, "tank/p", 4096, 16384, true, "novalue"); !errors.Is(err, ErrInvalidName) {
		t.Errorf("create with a property without '=': %v, want ErrInvalidName", err)
	}
	if err := r.Snapshot(ctx, snap3); err != nil {
		t.Error(err)
	}
	if err := r.Bookmark(ctx, snap3, BookmarkFor(snap3)); err != nil {
		t.Error(err)
	}
	if err := r.MoveBookmark(ctx, snap3, "tank/vol#"+LastSentBookmark); err != nil {
		t.Errorf("MoveBookmark over a missing bookmark: %v", err)
	}
	if err := r.DestroyIfExists(ctx, snap1); err != nil {
		t.Errorf("DestroyIfExists missing: %v", err)
	}
	if err := r.Destroy(ctx, snap1); !errors.Is(err, ErrDatasetNotFound) {
		t.Errorf("Destroy missing: %v", err)
	}
	if err := r.DestroyIfExists(ctx, snap2); !errors.Is(err, ErrBusy) {
		t.Errorf("DestroyIfExists busy: %v", err)
	}
	if err := r.Rollback(ctx, snap3); err != nil {
		t.Error(err)
	}
	if err := r.Clone(ctx, snap3, "tank/vol.r", "readonly=on"); err != nil {
		t.Error(err)
	}
	if err := r.Clone(ctx, snap3, "tank/vol"); !errors.Is(err, ErrExists) {
		t.Errorf("clone onto an existing dataset: %v", err)
	}
	if err := r.Clone(ctx, "tank/vol#b", "tank/x"); err == nil {
		t.Error("clone of a bookmark accepted")
	}
	if err := r.DestroyClone(ctx, "tank/vol.r"); err != nil {
		t.Error(err)
	}
	if err := r.DestroyClone(ctx, "tank/vol"); !errors.Is(err, ErrNotAClone) {
		t.Errorf("destroy of a dataset that is not a clone: %v", err)
	}
	if err := r.DestroyClone(ctx, "tank/gone"); err != nil {
		t.Errorf("destroy of a missing clone: %v", err)
	}
	if ok, err := r.Exists(ctx, snap3); !ok || err != nil {
		t.Errorf("Exists: %v %v", ok, err)
	}
	if ok, err := r.Exists(ctx, snap1); ok || err != nil {
		t.Errorf("Exists missing: %v %v", ok, err)
	}
	// Names that are not snapshots/bookmarks never reach zfs.
	n := len(f.calls)
	for _, err := range []error{
		r.Destroy(ctx, "tank/vol"), r.Destroy(ctx, "-r"), r.Snapshot(ctx, "tank/vol"),
		r.Bookmark(ctx, snap3, "tank/vol@x"), r.Rollback(ctx, "tank/vol#b"), r.CreateVolume(ctx, "-V", 1, 1, false),
	} {
		if !errors.Is(err, ErrInvalidName) {
			t.Errorf("invalid name: %v", err)
		}
	}
	if len(f.calls) != n {
		t.Errorf("invalid names ran %d commands", len(f.calls)-n)
	}
}

func TestParseGet(t *testing.T) {
	m, err := ParseGet([]byte("guid\t1\nreceive_resume_token\t-\n"))
	if err != nil || m["guid"] != "1" || m["receive_resume_token"] != "" {
		t.Errorf("%v %v", m, err)
	}
	for _, bad := range []string{"guid 1\n", "\t1\n", "guid\t1\t2\n"} {
		if _, err := ParseGet([]byte(bad)); !errors.Is(err, ErrSyntax) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

const (
	snap1 = "tank/vol@dmsnap-20261122T100000Z-000001"
	snap2 = "tank/vol@dmsnap-20261122T100000Z-000002"
	snap3 = "tank/vol@dmsnap-20261122T110500Z-000003"
	book2 = "tank/vol#dmsnap-20261122T100000Z-000002"
)
