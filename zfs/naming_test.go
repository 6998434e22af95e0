package zfs

import (
	"testing"
	"time"
)

func TestSnapshotNameRoundTrip(t *testing.T) {
	loc := time.FixedZone("X", 5*3600)
	tm := time.Date(2026, 11, 22, 15, 15, 0, 999, loc)
	name := SnapshotName(tm, 42)
	if name != "dmsnap-20261122T101500Z-000042" {
		t.Fatalf("name %q", name)
	}
	got, seq, ok := ParseSnapshotName(name)
	if !ok || seq != 42 || !got.Equal(tm.Truncate(time.Second)) {
		t.Errorf("parse %v %d %v", got, seq, ok)
	}
	if n := SnapshotName(tm, 12345678); n != "dmsnap-20261122T101500Z-12345678" {
		t.Errorf("wide seq %q", n)
	}
	if _, s, ok := ParseSnapshotName("dmsnap-20261122T101500Z-12345678"); !ok || s != 12345678 {
		t.Errorf("wide seq parse %d %v", s, ok)
	}
	for _, bad := range []string{"", "manual", LastSentBookmark, "dmsnap-20261122T101500Z-42",
		"dmsnap-20261122T101500Z-0000042", "dmsnap-20261122T101500Z-+00042", "dmsnap-20261322T101500Z-000042",
		"dmsnap-20261122T101500-000042", "dmsnap-20261122T101500Z-000042x", "xdmsnap-20261122T101500Z-000042"} {
		if _, _, ok := ParseSnapshotName(bad); ok {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestBookmarkNames(t *testing.T) {
	if b := BookmarkFor("tank/vol@dmsnap-x"); b != "tank/vol#dmsnap-x" {
		t.Errorf("BookmarkFor %q", b)
	}
	if b := BookmarkFor("tank/vol"); b != "" {
		t.Errorf("BookmarkFor without @ = %q", b)
	}
	if SnapshotFullName("a/b", "s") != "a/b@s" || BookmarkFullName("a/b", LastSentBookmark) != "a/b#dmsnap-last-sent" {
		t.Error("full names")
	}
	for _, tc := range []struct {
		p    Point
		ours bool
	}{
		{Point{Name: "a/b@" + SnapshotName(time.Unix(0, 0), 1), Kind: Snapshot}, true},
		{Point{Name: "a/b#" + SnapshotName(time.Unix(0, 0), 1), Kind: Bookmark}, true},
		{Point{Name: "a/b#" + LastSentBookmark, Kind: Bookmark}, true},
		{Point{Name: "a/b@" + LastSentBookmark, Kind: Snapshot}, false},
		{Point{Name: "a/b@manual", Kind: Snapshot}, false},
	} {
		if IsOurs(tc.p) != tc.ours {
			t.Errorf("IsOurs(%s) = %v", tc.p.Name, !tc.ours)
		}
	}
}
