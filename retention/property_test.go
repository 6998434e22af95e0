package retention

import (
	"cmp"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/dmsnap/dmsnap/zfs"
)

// randomHistory returns a listing of random snapshots and bookmarks, with
// creation gaps from seconds to months, a clock that sometimes goes
// backwards, foreign names, and a random policy (bases and source guids
// drawn from the listing).
func randomHistory(r *rand.Rand) ([]zfs.Point, Policy) {
	var h hist
	t := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	n := r.IntN(60)
	var snaps []zfs.Point
	for i := 0; i < n; i++ {
		switch r.IntN(10) {
		case 0:
			t = t.Add(-time.Duration(r.IntN(7200)) * time.Second) // clock stepped back
		case 1:
			t = t.Add(time.Duration(r.IntN(90*24)) * time.Hour) // downtime
		default:
			t = t.Add(time.Duration(1+r.IntN(4*3600)) * time.Second)
		}
		var s zfs.Point
		if r.IntN(8) == 0 {
			h.txg += 10
			s = zfs.Point{Name: ds + "@manual-" + string(rune('a'+i%26)) + string(rune('a'+i/26)), Kind: zfs.Snapshot,
				GUID: h.txg*7919 + 13, CreateTXG: h.txg, Creation: t}
			h.pts = append(h.pts, s)
		} else {
			s = h.snapAt(t)
		}
		snaps = append(snaps, s)
		if r.IntN(3) > 0 {
			h.bm(s)
		}
	}
	if len(snaps) > 0 && r.IntN(2) == 0 {
		ls := snaps[r.IntN(len(snaps))]
		ls.Kind, ls.Name = zfs.Bookmark, zfs.BookmarkFullName(ds, zfs.LastSentBookmark)
		h.pts = append(h.pts, ls)
	}
	// Bookmarks without their snapshot (destroyed earlier).
	pts := h.pts[:0:0]
	for _, p := range h.pts {
		if p.Kind == zfs.Snapshot && zfs.IsOurs(p) && r.IntN(6) == 0 && len(snaps) > 1 {
			continue
		}
		pts = append(pts, p)
	}

	periods := []Period{Latest, Hourly, Daily, Weekly, Monthly, Yearly}
	grid := func() Grid {
		var g Grid
		for _, p := range periods {
			if r.IntN(2) == 0 {
				g.Rules = append(g.Rules, Rule{Period: p, Count: 1 + r.IntN(6)})
			}
		}
		if len(g.Rules) == 0 {
			g.Rules = []Rule{{Period: periods[r.IntN(len(periods))], Count: 1 + r.IntN(3)}}
		}
		return g
	}
	pol := Policy{Snapshots: grid(), Foreign: r.IntN(4) == 0}
	if r.IntN(2) == 0 {
		b := grid()
		pol.Bookmarks = &b
	}
	if r.IntN(2) == 0 {
		pol.Location = testZones[r.IntN(len(testZones))]
	}
	for i := r.IntN(3); i > 0 && len(pts) > 0; i-- {
		pol.Protect = append(pol.Protect, pts[r.IntN(len(pts))].GUID)
	}
	if r.IntN(2) == 0 {
		pol.Source = []uint64{999}
		for _, p := range pts {
			if r.IntN(3) == 0 {
				pol.Source = append(pol.Source, p.GUID)
			}
		}
	}
	return pts, pol
}

var testZones = func() []*time.Location {
	out := []*time.Location{time.UTC}
	for _, name := range []string{"Europe/Berlin", "America/New_York", "Asia/Kolkata"} {
		if loc, err := time.LoadLocation(name); err == nil {
			out = append(out, loc)
		}
	}
	return out
}()

func TestApplyProperties(t *testing.T) {
	for seed := uint64(0); seed < 1000; seed++ {
		r := rand.New(rand.NewPCG(seed, 19))
		pts, pol := randomHistory(r)
		got, err := Apply(pts, pol)
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		checkInvariants(t, seed, pts, pol, got)

		// Independent of input order.
		shuffled := append([]zfs.Point(nil), pts...)
		r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		again, err := Apply(shuffled, pol)
		if err != nil {
			t.Fatalf("seed %d: shuffled: %v", seed, err)
		}
		if len(again) != len(got) {
			t.Fatalf("seed %d: %d decisions, shuffled %d", seed, len(got), len(again))
		}
		for i := range got {
			if got[i] != again[i] {
				t.Fatalf("seed %d: decision %d differs after shuffling:\n%+v\n%+v", seed, i, got[i], again[i])
			}
		}

		// Applying the grid to what it kept destroys nothing more.
		var keptPts []zfs.Point
		for _, d := range got {
			if d.Keep {
				keptPts = append(keptPts, d.Point)
			}
		}
		second, err := Apply(keptPts, pol)
		if err != nil {
			t.Fatalf("seed %d: second pass: %v", seed, err)
		}
		for _, d := range second {
			if !d.Keep {
				t.Fatalf("seed %d: second pass destroys %s: %s", seed, d.Point.Name, d.Reason)
			}
		}
	}
}

func checkInvariants(t *testing.T, seed uint64, pts []zfs.Point, pol Policy, got []Decision) {
	t.Helper()
	if len(got) != len(pts) {
		t.Fatalf("seed %d: %d decisions for %d points", seed, len(got), len(pts))
	}
	fail := func(d Decision, why string) {
		t.Fatalf("seed %d: %s destroyed (%s) but %s", seed, d.Point.Name, d.Reason, why)
	}
	var horizon uint64
	for _, g := range pol.Protect {
		for _, p := range pts {
			if p.GUID == g && (horizon == 0 || p.CreateTXG < horizon) {
				horizon = p.CreateTXG
			}
		}
	}
	protected := map[uint64]bool{}
	for _, g := range pol.Protect {
		protected[g] = true
	}
	source := map[uint64]bool{}
	for _, g := range pol.Source {
		source[g] = true
	}
	newest, newestCommon := -1, -1
	for i, d := range got {
		if d.Reason == "" {
			t.Fatalf("seed %d: %s has no reason", seed, d.Point.Name)
		}
		if i > 0 && got[i-1].Point.CreateTXG > d.Point.CreateTXG {
			t.Fatalf("seed %d: decisions not in createtxg order", seed)
		}
		if d.Point.Kind == zfs.Snapshot {
			newest = i
			if source[d.Point.GUID] {
				newestCommon = i
			}
		}
		if d.Keep {
			continue
		}
		switch p := d.Point; {
		case protected[p.GUID]:
			fail(d, "it is a replication base")
		case horizon != 0 && p.CreateTXG > horizon:
			fail(d, "it is newer than the oldest base")
		case p.Kind == zfs.Bookmark && p.Short() == zfs.LastSentBookmark:
			fail(d, "it is the stable bookmark")
		case !pol.Foreign && !zfs.IsOurs(p):
			fail(d, "dmsnap did not name it")
		case p.Kind == zfs.Bookmark && pol.Bookmarks == nil:
			fail(d, "there is no bookmark grid")
		}
	}
	if newest >= 0 && !got[newest].Keep {
		fail(got[newest], "it is the newest snapshot")
	}
	if newestCommon >= 0 && !got[newestCommon].Keep {
		fail(got[newestCommon], "it is the newest snapshot in common with the source")
	}

	// The grid part, as an oracle written differently from Apply: for each
	// rule, the periods ranked by their newest point (createtxg); the
	// newest point of each of the first N periods is kept. A point kept by
	// no safety rule must be exactly one of those.
	loc := pol.Location
	if loc == nil {
		loc = time.UTC
	}
	byGrid := map[int]bool{}
	for _, k := range []struct {
		kind zfs.Kind
		grid *Grid
	}{{zfs.Snapshot, &pol.Snapshots}, {zfs.Bookmark, pol.Bookmarks}} {
		if k.grid == nil {
			continue
		}
		for _, rule := range k.grid.Rules {
			newestIn := map[int64]int{} // period → index of its newest point
			for i, d := range got {
				p := d.Point
				if p.Kind != k.kind || (p.Kind == zfs.Bookmark && p.Short() == zfs.LastSentBookmark) || (!pol.Foreign && !zfs.IsOurs(p)) {
					continue
				}
				key := int64(i)
				if rule.Period != Latest {
					key, _ = bucket(rule.Period, p.Creation, loc)
				}
				if j, ok := newestIn[key]; !ok || got[j].Point.CreateTXG < p.CreateTXG {
					newestIn[key] = i
				}
			}
			var ranked []int
			for _, i := range newestIn {
				ranked = append(ranked, i)
			}
			slices.SortFunc(ranked, func(a, b int) int { return cmp.Compare(got[b].Point.CreateTXG, got[a].Point.CreateTXG) })
			for _, i := range ranked[:min(rule.Count, len(ranked))] {
				byGrid[i] = true
			}
		}
	}
	for i, d := range got {
		p := d.Point
		safe := protected[p.GUID] || (horizon != 0 && p.CreateTXG > horizon) || i == newest || i == newestCommon ||
			(p.Kind == zfs.Bookmark && (p.Short() == zfs.LastSentBookmark || pol.Bookmarks == nil)) ||
			(!pol.Foreign && !zfs.IsOurs(p))
		if p.Kind == zfs.Snapshot && zfs.IsOurs(p) && i == newestOursIndex(got) {
			safe = true
		}
		if want := safe || byGrid[i]; d.Keep != want {
			t.Fatalf("seed %d: %s keep %v (%s), oracle says %v", seed, p.Name, d.Keep, d.Reason, want)
		}
	}
}

func newestOursIndex(ds []Decision) int {
	n := -1
	for i, d := range ds {
		if d.Point.Kind == zfs.Snapshot && zfs.IsOurs(d.Point) {
			n = i
		}
	}
	return n
}

// TestApplyIncremental runs a job with a fake clock: a snapshot every
// 1–180 minutes (sometimes days of downtime) for months, the grid applied
// after each run as the daemon does. What survives equals one Apply over
// the whole history: pruning early never loses a point the grid wants
// later.
func TestApplyIncremental(t *testing.T) {
	grid := mustGrid("keep 24 hourly, 14 daily, 8 weekly, 12 monthly")
	for seed := uint64(0); seed < uint64(len(testZones)); seed++ {
		r := rand.New(rand.NewPCG(seed, 7))
		loc := testZones[int(seed)%len(testZones)]
		pol := Policy{Snapshots: grid, Location: loc}
		var h hist
		clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		var live []zfs.Point
		for run := 0; run < 1000; run++ {
			if r.IntN(200) == 0 {
				clock = clock.Add(time.Duration(1+r.IntN(10)) * 24 * time.Hour)
			}
			clock = clock.Add(time.Duration(1+r.IntN(180)) * time.Minute)
			live = append(live, h.snapAt(clock))
			ds, err := Apply(live, pol)
			if err != nil {
				t.Fatal(err)
			}
			live = live[:0]
			for _, d := range ds {
				if d.Keep {
					live = append(live, d.Point)
				}
			}
		}
		all, err := Apply(h.pts, pol)
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		for _, d := range all {
			if d.Keep {
				want = append(want, d.Point.Name)
			}
		}
		var got []string
		for _, p := range live {
			got = append(got, p.Name)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("seed %d (%s): incremental pruning kept %d points, one pass over the history %d\n%v\n%v", seed, loc, len(got), len(want), got, want)
		}
		if len(got) > 24+14+8+12 || len(got) < 24 {
			t.Fatalf("seed %d: kept %d points, want 24..58", seed, len(got))
		}
	}
}
