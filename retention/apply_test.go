package retention

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dmsnap/dmsnap/zfs"
)

const ds = "tank/vol"

// hist builds a synthetic listing: createtxg grows with every call, guids
// are unrelated to it, names are dmsnap names from the creation time.
type hist struct {
	pts []zfs.Point
	txg uint64
}

func (h *hist) snapAt(t time.Time) zfs.Point {
	h.txg += 10
	p := zfs.Point{
		Name:      zfs.SnapshotFullName(ds, zfs.SnapshotName(t, h.txg)),
		Kind:      zfs.Snapshot,
		GUID:      h.txg*7919 + 13,
		CreateTXG: h.txg,
		Creation:  t,
	}
	h.pts = append(h.pts, p)
	return p
}

func (h *hist) snap(ts string) zfs.Point { return h.snapAt(mustTime(ts)) }

// bm adds the bookmark of s (same guid and createtxg).
func (h *hist) bm(s zfs.Point) zfs.Point {
	b := s
	b.Kind = zfs.Bookmark
	b.Name = zfs.BookmarkFor(s.Name)
	h.pts = append(h.pts, b)
	return b
}

func mustTime(ts string) time.Time {
	t, err := time.Parse(time.RFC3339, ts)
	if err != nil {
		panic(err)
	}
	return t
}

func mustGrid(s string) Grid {
	g, err := ParseGrid(s)
	if err != nil {
		panic(err)
	}
	return g
}

func mustLoc(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Skipf("time zone %s: %v", name, err)
	}
	return loc
}

// kept returns the creation times (UTC, RFC 3339) of the kept snapshots.
func kept(t *testing.T, pts []zfs.Point, p Policy) []string {
	t.Helper()
	ds, err := Apply(pts, p)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, d := range ds {
		if d.Reason == "" {
			t.Errorf("%s: no reason", d.Point.Name)
		}
		if d.Keep && d.Point.Kind == zfs.Snapshot {
			out = append(out, d.Point.Creation.UTC().Format(time.RFC3339))
		}
	}
	return out
}

func TestApplyHourly(t *testing.T) {
	var h hist
	start := mustTime("2026-12-02T00:00:00Z")
	for m := 0; m < 30*60; m += 20 {
		h.snapAt(start.Add(time.Duration(m) * time.Minute))
	}
	var want []string
	for hr := 6; hr < 30; hr++ {
		want = append(want, start.Add(time.Duration(hr)*time.Hour+40*time.Minute).Format(time.RFC3339))
	}
	got := kept(t, h.pts, Policy{Snapshots: mustGrid("keep 24 hourly")})
	if !slices.Equal(got, want) {
		t.Errorf("kept %v\nwant %v", got, want)
	}
}

func TestApplyPeriods(t *testing.T) {
	for _, tc := range []struct {
		name  string
		grid  string
		loc   string
		times []string
		want  []string
	}{
		{"daily UTC", "keep 2 daily", "UTC",
			[]string{"2026-12-01T23:30:00Z", "2026-12-02T00:30:00Z", "2026-12-02T04:30:00Z", "2026-12-02T05:30:00Z"},
			[]string{"2026-12-01T23:30:00Z", "2026-12-02T05:30:00Z"}},
		{"daily New York: the day starts at 05:00 UTC", "keep 2 daily", "America/New_York",
			[]string{"2026-12-01T23:30:00Z", "2026-12-02T00:30:00Z", "2026-12-02T04:30:00Z", "2026-12-02T05:30:00Z"},
			[]string{"2026-12-02T04:30:00Z", "2026-12-02T05:30:00Z"}},
		{"weekly: ISO weeks start on Monday", "keep 2 weekly", "UTC",
			[]string{"2026-12-05T12:00:00Z", "2026-12-06T23:00:00Z", "2026-12-07T01:00:00Z", "2026-12-08T09:00:00Z"},
			[]string{"2026-12-06T23:00:00Z", "2026-12-08T09:00:00Z"}},
		{"weekly across the year end (2026-W53)", "keep 3 weekly", "UTC",
			[]string{"2026-12-27T10:00:00Z", "2026-12-28T10:00:00Z", "2027-01-03T10:00:00Z", "2027-01-04T10:00:00Z"},
			[]string{"2026-12-27T10:00:00Z", "2027-01-03T10:00:00Z", "2027-01-04T10:00:00Z"}},
		{"monthly: a gap of months does not use up the count", "keep 3 monthly", "UTC",
			[]string{"2026-01-15T00:00:00Z", "2026-01-20T00:00:00Z", "2026-05-01T00:00:00Z", "2026-11-30T00:00:00Z", "2026-12-01T00:00:00Z"},
			[]string{"2026-05-01T00:00:00Z", "2026-11-30T00:00:00Z", "2026-12-01T00:00:00Z"}},
		{"yearly", "keep 2 yearly", "UTC",
			[]string{"2024-06-01T00:00:00Z", "2025-03-01T00:00:00Z", "2025-09-01T00:00:00Z", "2026-12-01T00:00:00Z"},
			[]string{"2025-09-01T00:00:00Z", "2026-12-01T00:00:00Z"}},
		{"latest and daily together", "keep 2 latest, 2 daily", "UTC",
			[]string{"2026-11-29T10:00:00Z", "2026-11-30T10:00:00Z", "2026-11-30T20:00:00Z", "2026-12-01T08:00:00Z", "2026-12-01T09:00:00Z", "2026-12-01T10:00:00Z"},
			[]string{"2026-11-30T20:00:00Z", "2026-12-01T09:00:00Z", "2026-12-01T10:00:00Z"}},
		// Berlin falls back on 2026-10-25 at 01:00 UTC (03:00 CEST → 02:00
		// CET): the local hour 02h happens twice and is one bucket.
		{"hourly over the fall-back hour in Berlin", "keep 10 hourly", "Europe/Berlin",
			[]string{"2026-10-24T23:30:00Z", "2026-10-25T00:15:00Z", "2026-10-25T00:45:00Z", "2026-10-25T01:15:00Z", "2026-10-25T01:45:00Z", "2026-10-25T02:15:00Z"},
			[]string{"2026-10-24T23:30:00Z", "2026-10-25T01:45:00Z", "2026-10-25T02:15:00Z"}},
		{"the same hours in UTC", "keep 10 hourly", "UTC",
			[]string{"2026-10-24T23:30:00Z", "2026-10-25T00:15:00Z", "2026-10-25T00:45:00Z", "2026-10-25T01:15:00Z", "2026-10-25T01:45:00Z", "2026-10-25T02:15:00Z"},
			[]string{"2026-10-24T23:30:00Z", "2026-10-25T00:45:00Z", "2026-10-25T01:45:00Z", "2026-10-25T02:15:00Z"}},
		// Berlin springs forward on 2026-03-29 (a 23-hour day).
		{"daily over the 23-hour day in Berlin", "keep 3 daily", "Europe/Berlin",
			[]string{"2026-03-28T22:30:00Z", "2026-03-28T23:30:00Z", "2026-03-29T21:30:00Z", "2026-03-29T22:30:00Z"},
			[]string{"2026-03-28T22:30:00Z", "2026-03-29T21:30:00Z", "2026-03-29T22:30:00Z"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h hist
			for _, ts := range tc.times {
				h.snap(ts)
			}
			got := kept(t, h.pts, Policy{Snapshots: mustGrid(tc.grid), Location: mustLoc(t, tc.loc)})
			if !slices.Equal(got, tc.want) {
				t.Errorf("kept %v\nwant %v", got, tc.want)
			}
		})
	}
}

// A creation clock that went backwards, and names that sort the other
// way, change nothing: the newest point is the one with the highest
// createtxg.
func TestApplyOrdersByCreateTXG(t *testing.T) {
	pts := []zfs.Point{
		{Name: ds + "@" + zfs.SnapshotName(mustTime("2026-12-02T10:00:00Z"), 3), Kind: zfs.Snapshot, GUID: 900, CreateTXG: 100, Creation: mustTime("2026-12-02T10:00:00Z")},
		{Name: ds + "@" + zfs.SnapshotName(mustTime("2026-12-02T12:00:00Z"), 2), Kind: zfs.Snapshot, GUID: 800, CreateTXG: 200, Creation: mustTime("2026-12-02T12:00:00Z")},
		{Name: ds + "@" + zfs.SnapshotName(mustTime("2026-12-02T11:00:00Z"), 1), Kind: zfs.Snapshot, GUID: 700, CreateTXG: 300, Creation: mustTime("2026-12-02T11:00:00Z")},
	}
	got, err := Apply([]zfs.Point{pts[1], pts[2], pts[0]}, Policy{Snapshots: mustGrid("keep 1 daily")})
	if err != nil {
		t.Fatal(err)
	}
	for i, d := range got {
		if d.Point.GUID != pts[i].GUID {
			t.Fatalf("decision %d is guid %d, want createtxg order", i, d.Point.GUID)
		}
		if d.Keep != (i == 2) {
			t.Errorf("%s (createtxg %d): keep %v: %s", d.Point.Name, d.Point.CreateTXG, d.Keep, d.Reason)
		}
	}
	if !strings.Contains(got[2].Reason, "newest snapshot") || !strings.Contains(got[2].Reason, "daily 2026-12-02 (1 of 1)") {
		t.Errorf("reason %q", got[2].Reason)
	}
	if !strings.Contains(got[0].Reason, "keep 1 daily") {
		t.Errorf("destroy reason %q does not name the grid", got[0].Reason)
	}
}

// decisions returns Apply's verdicts by name.
func decisions(t *testing.T, pts []zfs.Point, p Policy) map[string]Decision {
	t.Helper()
	ds, err := Apply(pts, p)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]Decision{}
	for _, d := range ds {
		m[d.Point.Name] = d
	}
	return m
}

func TestApplyProtectsBases(t *testing.T) {
	var h hist
	var snaps, bms []zfs.Point
	for d := 0; d < 10; d++ {
		s := h.snapAt(mustTime("2026-12-01T00:00:00Z").AddDate(0, 0, d))
		snaps = append(snaps, s)
		bms = append(bms, h.bm(s))
	}
	ls := bms[7]
	ls.Name = zfs.BookmarkFullName(ds, zfs.LastSentBookmark)
	h.pts = append(h.pts, ls)
	bmGrid := mustGrid("keep 1 latest")
	// The base is the bookmark of snapshot 5 (its snapshot shares the guid).
	got := decisions(t, h.pts, Policy{Snapshots: mustGrid("keep 2 daily"), Bookmarks: &bmGrid, Protect: []uint64{bms[5].GUID}})
	for i := range snaps {
		s, b := got[snaps[i].Name], got[bms[i].Name]
		if s.Keep != (i >= 5) || b.Keep != (i >= 5) {
			t.Errorf("day %d: snapshot keep %v (%s), bookmark keep %v (%s)", i, s.Keep, s.Reason, b.Keep, b.Reason)
		}
	}
	if r := got[bms[5].Name].Reason; !strings.Contains(r, "replication base") {
		t.Errorf("base reason %q", r)
	}
	if r := got[snaps[6].Name].Reason; !strings.Contains(r, "newer than the oldest replication base") {
		t.Errorf("reason %q", r)
	}
	if d := got[ls.Name]; !d.Keep || !strings.Contains(d.Reason, "stable bookmark") {
		t.Errorf("last-sent: %+v", d)
	}

	// Without a base the grids alone decide; the stable bookmark stays
	// and is not counted by the bookmark grid.
	got = decisions(t, h.pts, Policy{Snapshots: mustGrid("keep 2 daily"), Bookmarks: &bmGrid})
	for i := range snaps {
		if s, b := got[snaps[i].Name], got[bms[i].Name]; s.Keep != (i >= 8) || b.Keep != (i == 9) {
			t.Errorf("no base, day %d: snapshot keep %v, bookmark keep %v (%s)", i, s.Keep, b.Keep, b.Reason)
		}
	}
	if !got[ls.Name].Keep {
		t.Error("the stable bookmark was not kept")
	}

	// Without a bookmark grid every bookmark stays.
	got = decisions(t, h.pts, Policy{Snapshots: mustGrid("keep 1 latest")})
	for _, b := range bms {
		if !got[b.Name].Keep {
			t.Errorf("%s destroyed without a bookmark grid", b.Name)
		}
	}
}

func TestApplyTargetKeepsNewestCommon(t *testing.T) {
	var h hist
	var snaps []zfs.Point
	for d := 0; d < 10; d++ {
		snaps = append(snaps, h.snapAt(mustTime("2026-12-01T00:00:00Z").AddDate(0, 0, d)))
	}
	src := []uint64{snaps[2].GUID, snaps[4].GUID, 12345}
	got := decisions(t, h.pts, Policy{Snapshots: mustGrid("keep 2 latest"), Source: src})
	for i, s := range snaps {
		d := got[s.Name]
		if d.Keep != (i == 4 || i >= 8) {
			t.Errorf("target snapshot %d: keep %v (%s)", i, d.Keep, d.Reason)
		}
	}
	if r := got[snaps[4].Name].Reason; !strings.Contains(r, "in common with the source") {
		t.Errorf("reason %q", r)
	}
}

func TestApplyForeign(t *testing.T) {
	var h hist
	h.snap("2026-12-01T00:00:00Z")
	h.txg += 10
	manual := zfs.Point{Name: ds + "@before-upgrade", Kind: zfs.Snapshot, GUID: 4242, CreateTXG: h.txg, Creation: mustTime("2026-12-01T01:00:00Z")}
	h.pts = append(h.pts, manual)
	h.snap("2026-12-01T02:00:00Z")
	h.snap("2026-12-01T03:00:00Z")
	got := decisions(t, h.pts, Policy{Snapshots: mustGrid("keep 1 latest")})
	if d := got[manual.Name]; !d.Keep || !strings.Contains(d.Reason, "not named by dmsnap") {
		t.Errorf("foreign snapshot: %+v", d)
	}
	if n := len(Destroy(mapValues(got))); n != 2 {
		t.Errorf("destroyed %d, want the 2 older dmsnap snapshots", n)
	}
	got = decisions(t, h.pts, Policy{Snapshots: mustGrid("keep 1 latest"), Foreign: true})
	if got[manual.Name].Keep {
		t.Errorf("Foreign: the foreign snapshot was kept: %s", got[manual.Name].Reason)
	}
}

// The newest snapshot stays even when it is not dmsnap's and the grid
// would keep nothing of it; the newest dmsnap snapshot stays too.
func TestApplyKeepsNewest(t *testing.T) {
	var h hist
	h.snap("2026-12-01T00:00:00Z")
	ours := h.snap("2026-12-01T01:00:00Z")
	h.txg += 10
	manual := zfs.Point{Name: ds + "@manual", Kind: zfs.Snapshot, GUID: 1, CreateTXG: h.txg, Creation: mustTime("2026-12-01T02:00:00Z")}
	h.pts = append(h.pts, manual)
	got := decisions(t, h.pts, Policy{Snapshots: mustGrid("keep 1 latest"), Foreign: true})
	if d := got[manual.Name]; !d.Keep || !strings.Contains(d.Reason, "newest snapshot") {
		t.Errorf("newest: %+v", d)
	}
	if d := got[ours.Name]; !d.Keep || !strings.Contains(d.Reason, "newest dmsnap snapshot") {
		t.Errorf("newest dmsnap: %+v", d)
	}
}

func TestApplyErrors(t *testing.T) {
	var h hist
	a := h.snap("2026-12-01T00:00:00Z")
	h.snap("2026-12-01T01:00:00Z")
	g := mustGrid("keep 1 daily")
	if _, err := Apply(h.pts, Policy{Snapshots: g, Protect: []uint64{a.GUID + 1}}); !errors.Is(err, zfs.ErrDatasetNotFound) {
		t.Errorf("missing base: %v", err)
	}
	for i := 0; i < 20; i++ { // the first missing base in the caller's order is named, every time
		_, err := Apply(h.pts, Policy{Snapshots: g, Protect: []uint64{a.GUID, 111, 222, 333}})
		if err == nil || !strings.Contains(err.Error(), "guid 111 ") {
			t.Fatalf("missing bases: %v", err)
		}
	}
	if _, err := Apply(h.pts, Policy{}); !errors.Is(err, ErrSyntax) {
		t.Errorf("zero policy: %v", err)
	}
	if _, err := Apply(h.pts, Policy{Snapshots: g, Bookmarks: &Grid{}}); !errors.Is(err, ErrSyntax) {
		t.Errorf("empty bookmark grid: %v", err)
	}
	if _, err := Apply(h.pts, Policy{Snapshots: Grid{Rules: []Rule{{Daily, 1}, {Daily, 2}}}}); !errors.Is(err, ErrSyntax) {
		t.Errorf("duplicate period: %v", err)
	}
	mixed := append([]zfs.Point{}, h.pts...)
	other := a
	other.Name, other.GUID = "tank/other@"+a.Short(), a.GUID+99
	mixed = append(mixed, other)
	if _, err := Apply(mixed, Policy{Snapshots: g}); !errors.Is(err, zfs.ErrSyntax) {
		t.Errorf("mixed datasets: %v", err)
	}
}

func mapValues(m map[string]Decision) []Decision {
	var out []Decision
	for _, d := range m {
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b Decision) int { return strings.Compare(a.Point.Name, b.Point.Name) })
	return out
}

func ExampleApply() {
	var h hist
	for d := 0; d < 5; d++ {
		h.snapAt(time.Date(2026, 12, 1+d, 2, 0, 0, 0, time.UTC))
	}
	ds, _ := Apply(h.pts, Policy{Snapshots: mustGrid("keep 3 daily")})
	for _, d := range ds {
		fmt.Printf("%s keep=%v: %s\n", d.Point.Creation.Format("01-02"), d.Keep, d.Reason)
	}
	// Output:
	// 12-01 keep=false: no rule of the snapshot grid (keep 3 daily) keeps it
	// 12-02 keep=false: no rule of the snapshot grid (keep 3 daily) keeps it
	// 12-03 keep=true: daily 2026-12-03 (3 of 3)
	// 12-04 keep=true: daily 2026-12-04 (2 of 3)
	// 12-05 keep=true: newest snapshot; daily 2026-12-05 (1 of 3)
}
