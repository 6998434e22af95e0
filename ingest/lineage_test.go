package ingest

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/dmsnap/dmsnap/zfs"
)

const ds = "tank/vol"

func snap(short string, guid, txg uint64) zfs.Point {
	return zfs.Point{Name: ds + "@" + short, Kind: zfs.Snapshot, GUID: guid, CreateTXG: txg,
		Creation: time.Unix(int64(txg), 0).UTC()}
}

func bookmark(short string, guid, txg uint64) zfs.Point {
	return zfs.Point{Name: ds + "#" + short, Kind: zfs.Bookmark, GUID: guid, CreateTXG: txg,
		Creation: time.Unix(int64(txg), 0).UTC()}
}

func TestDecide(t *testing.T) {
	fresh := Lineage{Dataset: ds, Pool: "vg0", Origin: "data"}
	pendingFirst := fresh
	pendingFirst.Pending = &Pending{Seq: 1, Cursor: "data-ingest-1", Snapshot: ds + "@dmsnap-1"}

	// Committed at tank/vol@dmsnap-2 (guid 22, txg 200).
	committed := Lineage{Dataset: ds, Pool: "vg0", Origin: "data", Seq: 2, Cursor: "data-ingest-2",
		Snapshot: ds + "@dmsnap-2", GUID: 22, CreateTXG: 200}
	pendingNext := committed
	pendingNext.Pending = &Pending{Seq: 3, Cursor: "data-ingest-3", Snapshot: ds + "@dmsnap-3"}

	s1, s2, s3 := snap("dmsnap-1", 11, 100), snap("dmsnap-2", 22, 200), snap("dmsnap-3", 33, 300)
	b2 := bookmark("dmsnap-2", 22, 200)
	foreign := snap("manual", 44, 250)

	for _, tc := range []struct {
		name    string
		l       Lineage
		pts     []zfs.Point
		written uint64
		want    Action
		wantErr bool
	}{
		// Before the first commit.
		{name: "new zvol", l: fresh, want: Proceed},
		{name: "new zvol with writes", l: fresh, written: 4096, want: Dirty},
		{name: "first ingest interrupted before writing", l: pendingFirst, want: Dirty},
		{name: "first ingest interrupted mid-copy", l: pendingFirst, written: 1 << 20, want: Dirty},
		{name: "first ingest committed, not recorded", l: pendingFirst, pts: []zfs.Point{s1}, written: 0, want: Adopt},
		{name: "first ingest committed, bookmarked, not recorded", l: pendingFirst,
			pts: []zfs.Point{s1, bookmark("dmsnap-1", 11, 100)}, want: Adopt},
		{name: "foreign snapshot on a never-committed zvol", l: fresh, pts: []zfs.Point{foreign}, wantErr: true},
		{name: "foreign snapshot, pending not taken", l: pendingFirst, pts: []zfs.Point{foreign}, written: 10, wantErr: true},
		{name: "pending name only as a bookmark", l: pendingFirst,
			pts: []zfs.Point{bookmark("dmsnap-1", 11, 100)}, want: Dirty},

		// After a commit.
		{name: "at the last snapshot", l: committed, pts: []zfs.Point{s1, s2}, want: Proceed},
		{name: "at the last snapshot, its bookmark after it", l: committed, pts: []zfs.Point{s1, s2, b2}, want: Proceed},
		{name: "older snapshots pruned", l: committed, pts: []zfs.Point{bookmark("dmsnap-1", 11, 100), s2}, want: Proceed},
		{name: "written since", l: committed, pts: []zfs.Point{s1, s2}, written: 512, want: Rollback},
		{name: "pending, snapshot not taken", l: pendingNext, pts: []zfs.Point{s1, s2}, want: Rollback},
		{name: "pending, mid-copy", l: pendingNext, pts: []zfs.Point{s1, s2}, written: 1 << 30, want: Rollback},
		{name: "pending committed, not recorded", l: pendingNext, pts: []zfs.Point{s1, s2, s3}, want: Adopt},
		{name: "pending committed with writes after", l: pendingNext, pts: []zfs.Point{s2, s3}, written: 4096, want: Adopt},
		{name: "last snapshot gone", l: committed, pts: []zfs.Point{s1}, wantErr: true},
		{name: "last snapshot gone, no points", l: committed, wantErr: true},
		{name: "last snapshot only as a bookmark", l: committed, pts: []zfs.Point{s1, b2}, wantErr: true},
		{name: "last snapshot recreated: same name, other guid", l: committed,
			pts: []zfs.Point{s1, snap("dmsnap-2", 99, 260)}, wantErr: true},
		{name: "createtxg mismatch", l: committed, pts: []zfs.Point{s1, snap("dmsnap-2", 22, 201)}, wantErr: true},
		{name: "foreign snapshot after the last ingest", l: committed, pts: []zfs.Point{s1, s2, foreign}, wantErr: true},
		{name: "foreign snapshot after, pending", l: pendingNext, pts: []zfs.Point{s2, foreign}, written: 1, wantErr: true},
		{name: "foreign snapshot before the last ingest", l: committed,
			pts: []zfs.Point{s1, snap("manual", 44, 150), s2}, want: Proceed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Decide(tc.l, tc.pts, tc.written)
			if tc.wantErr {
				if !errors.Is(err, ErrLineage) {
					t.Fatalf("Decide = %v, %v; want ErrLineage", got, err)
				}
				if !strings.HasPrefix(err.Error(), ds) {
					t.Fatalf("error %q does not name the dataset", err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("Decide = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

// TestDecideDoesNotModify: Decide only reads its arguments.
func TestDecideDoesNotModify(t *testing.T) {
	l := Lineage{Dataset: ds, Snapshot: ds + "@dmsnap-2", GUID: 22, CreateTXG: 200,
		Pending: &Pending{Seq: 3, Snapshot: ds + "@dmsnap-3"}}
	pts := []zfs.Point{snap("dmsnap-2", 22, 200), snap("x", 5, 300)}
	lc, pc, pend := l, append([]zfs.Point(nil), pts...), *l.Pending
	if _, err := Decide(l, pts, 7); !errors.Is(err, ErrLineage) {
		t.Fatalf("Decide: %v, want ErrLineage", err)
	}
	if !reflect.DeepEqual(l, lc) || !reflect.DeepEqual(pts, pc) || *l.Pending != pend {
		t.Fatalf("Decide modified its arguments")
	}
}

func TestCommitted(t *testing.T) {
	started := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	l := Lineage{Dataset: ds, Pool: "vg0", Origin: "data", Seq: 2, Cursor: "data-ingest-2",
		Snapshot: ds + "@dmsnap-2", GUID: 22, CreateTXG: 200,
		Pending: &Pending{Seq: 3, Cursor: "data-ingest-3", Snapshot: ds + "@dmsnap-3", Started: started}}
	p := snap("dmsnap-3", 33, 300)
	got := l.Committed(p)
	want := Lineage{Dataset: ds, Pool: "vg0", Origin: "data", Seq: 3, Cursor: "data-ingest-3",
		Snapshot: ds + "@dmsnap-3", GUID: 33, CreateTXG: 300}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Committed = %+v, want %+v", got, want)
	}
	if l.Pending == nil || l.Seq != 2 || l.GUID != 22 {
		t.Fatalf("Committed modified its receiver: %+v", l)
	}
	if a, err := Decide(got, []zfs.Point{snap("dmsnap-2", 22, 200), p}, 0); err != nil || a != Proceed {
		t.Fatalf("Decide after Committed = %v, %v; want Proceed", a, err)
	}

	// Without a pending ingest only the snapshot changes.
	l.Pending = nil
	got = l.Committed(p)
	want.Seq, want.Cursor = 2, "data-ingest-2"
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Committed without Pending = %+v, want %+v", got, want)
	}
}

func TestCursorName(t *testing.T) {
	for _, tc := range []struct {
		origin string
		seq    uint64
		want   string
	}{
		{"data", 1, "data-ingest-1"},
		{"vg0-data", 0, "vg0-data-ingest-0"},
		{"db", 18446744073709551615, "db-ingest-18446744073709551615"},
	} {
		if got := CursorName(tc.origin, tc.seq); got != tc.want {
			t.Errorf("CursorName(%q, %d) = %q, want %q", tc.origin, tc.seq, got, tc.want)
		}
	}
}

// TestLineageJSON: the lineage is persisted in the state file; its keys
// are part of that format and it round-trips.
func TestLineageJSON(t *testing.T) {
	l := Lineage{Dataset: ds, Pool: "vg0", Origin: "data", Seq: 2, Cursor: "data-ingest-2",
		Snapshot: ds + "@dmsnap-2", GUID: 1<<63 + 5, CreateTXG: 200,
		Pending: &Pending{Seq: 3, Cursor: "data-ingest-3", Snapshot: ds + "@dmsnap-3", CreatedZvol: true,
			Started: time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)}}
	b, err := json.Marshal(l)
	if err != nil {
		t.Fatal(err)
	}
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(b, &keys); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"dataset", "pool", "origin", "seq", "cursor", "snapshot", "guid", "createtxg", "pending"} {
		if _, ok := keys[k]; !ok {
			t.Errorf("key %q missing from %s", k, b)
		}
	}
	var back Lineage
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, l) {
		t.Fatalf("round trip = %+v, want %+v", back, l)
	}

	// Before the first commit the optional keys are absent.
	b, err = json.Marshal(Lineage{Dataset: ds, Pool: "vg0", Origin: "data"})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"dataset":"tank/vol","pool":"vg0","origin":"data","seq":0}`; string(b) != want {
		t.Fatalf("fresh lineage = %s, want %s", b, want)
	}
}

// TestDecideNewerBookmark: a bookmark newer than the last ingest (of a
// foreign snapshot since destroyed) is foreign history, while the
// bookmark of the last ingest itself is not.
func TestDecideNewerBookmark(t *testing.T) {
	l := Lineage{Dataset: "tank/vol", Snapshot: "tank/vol@dmsnap-2", GUID: 22, CreateTXG: 200}
	own := []zfs.Point{
		{Name: "tank/vol@dmsnap-2", Kind: zfs.Snapshot, GUID: 22, CreateTXG: 200},
		{Name: "tank/vol#dmsnap-2", Kind: zfs.Bookmark, GUID: 22, CreateTXG: 200},
	}
	if a, err := Decide(l, own, 0); err != nil || a != Proceed {
		t.Errorf("own bookmark: %v, %v; want Proceed", a, err)
	}
	foreign := append(own, zfs.Point{Name: "tank/vol#x", Kind: zfs.Bookmark, GUID: 44, CreateTXG: 250})
	if _, err := Decide(l, foreign, 4096); !errors.Is(err, ErrLineage) {
		t.Errorf("newer foreign bookmark: %v, want ErrLineage", err)
	}
}

// TestRelink: a lost lineage is rebuilt from the newest snapshot only
// when dmsnap named it; the result passes Decide.
func TestRelink(t *testing.T) {
	s1 := zfs.SnapshotName(time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), 4)
	s2 := zfs.SnapshotName(time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC), 9)
	base := Lineage{Dataset: "tank/vol", Pool: "p", Origin: "base"}
	pts := []zfs.Point{snap(s2, 22, 200), bookmark(s2, 22, 200), snap(s1, 11, 100)} // any order
	l, ok := Relink(base, pts)
	if !ok || l.Seq != 9 || l.GUID != 22 || l.CreateTXG != 200 || l.Snapshot != "tank/vol@"+s2 || l.Cursor != "" || l.Pool != "p" {
		t.Fatalf("Relink = %+v, %v", l, ok)
	}
	if a, err := Decide(l, pts, 0); err != nil || a != Proceed {
		t.Errorf("Decide after Relink: %v, %v", a, err)
	}
	if _, ok := Relink(base, append(pts, snap("mine", 33, 300))); ok {
		t.Error("relinked although the newest snapshot is not dmsnap's")
	}
	if _, ok := Relink(base, []zfs.Point{bookmark(s2, 22, 200)}); ok {
		t.Error("relinked without any snapshot")
	}
}
