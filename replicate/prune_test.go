package replicate

import (
	"errors"
	"fmt"
	"github.com/dmsnap/dmsnap/zfs"
	"slices"
	"testing"
	"time"
)

// history builds n dmsnap snapshots of tank/vol, each with its
// per-snapshot bookmark, plus a user snapshot "keepme" after the 2nd, and
// #dmsnap-last-sent on snapshot lastSent (1-based; 0 = none).
func history(n, lastSent int) []zfs.Point {
	t0 := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	var pts []zfs.Point
	for i := 1; i <= n; i++ {
		short := zfs.SnapshotName(t0, uint64(i)) // same second for all: names and times cannot order them
		guid, txg := uint64(5000+i), uint64(100*i)
		pts = append(pts,
			zfs.Point{Name: "tank/vol@" + short, Kind: zfs.Snapshot, GUID: guid, CreateTXG: txg, Creation: t0},
			zfs.Point{Name: "tank/vol#" + short, Kind: zfs.Bookmark, GUID: guid, CreateTXG: txg, Creation: t0})
		if i == lastSent {
			pts = append(pts, zfs.Point{Name: "tank/vol#" + zfs.LastSentBookmark, Kind: zfs.Bookmark, GUID: guid, CreateTXG: txg, Creation: t0})
		}
		if i == 2 {
			pts = append(pts, zfs.Point{Name: "tank/vol@keepme", Kind: zfs.Snapshot, GUID: 9999, CreateTXG: txg + 50, Creation: t0})
		}
	}
	return pts
}

func nm(kind string, i int) string {
	return fmt.Sprintf("tank/vol%s%s", kind, zfs.SnapshotName(time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC), uint64(i)))
}

func TestPrune(t *testing.T) {
	for _, tc := range []struct {
		name   string
		pts    []zfs.Point
		policy Retention
		want   []string
	}{
		{"keep 3 snapshots, 2 bookmarks, base is #8", history(10, 8), Retention{KeepSnapshots: 3, KeepBookmarks: 2, Protect: []uint64{5008}},
			[]string{nm("@", 1), nm("#", 1), nm("@", 2), nm("#", 2), nm("@", 3), nm("#", 3), nm("@", 4), nm("#", 4), nm("@", 5), nm("#", 5), nm("@", 6), nm("#", 6), nm("@", 7), nm("#", 7)}},
		// The base is old: nothing newer than it may go, whatever keep says.
		{"old base protects everything newer", history(10, 3), Retention{KeepSnapshots: 1, KeepBookmarks: 1, Protect: []uint64{5003}},
			[]string{nm("@", 1), nm("#", 1), nm("@", 2), nm("#", 2)}},
		{"no base: keep counts only", history(4, 0), Retention{KeepSnapshots: 2, KeepBookmarks: 3},
			[]string{nm("@", 1), nm("#", 1), nm("@", 2)}},
		{"foreign snapshots too", history(4, 0), Retention{KeepSnapshots: 2, KeepBookmarks: 4, Foreign: true},
			[]string{nm("@", 1), nm("@", 2), "tank/vol@keepme"}},
		{"keep zero, base is newest", history(3, 3), Retention{Protect: []uint64{5003}},
			[]string{nm("@", 1), nm("#", 1), nm("@", 2), nm("#", 2)}},
		{"two bases: the older one bounds", history(6, 6), Retention{Protect: []uint64{5006, 5002}},
			[]string{nm("@", 1), nm("#", 1)}},
		{"base only as bookmark", slices.DeleteFunc(history(5, 4), func(p zfs.Point) bool { return p.Name == nm("@", 4) }),
			Retention{KeepSnapshots: 0, KeepBookmarks: 0, Protect: []uint64{5004}},
			[]string{nm("@", 1), nm("#", 1), nm("@", 2), nm("#", 2), nm("@", 3), nm("#", 3)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := slices.Clone(tc.pts)
			slices.Reverse(in) // input order must not matter
			got, err := Prune(in, tc.policy)
			if err != nil {
				t.Fatal(err)
			}
			if names := pointNames(got); !slices.Equal(names, tc.want) {
				t.Errorf("destroy\n got %q\nwant %q", names, tc.want)
			}
			for _, p := range got {
				if p.Kind == zfs.Bookmark && p.Short() == zfs.LastSentBookmark {
					t.Errorf("pruned the stable bookmark")
				}
				for _, g := range tc.policy.Protect {
					if p.GUID == g {
						t.Errorf("pruned protected %s", p.Name)
					}
				}
			}
			again, _ := Prune(tc.pts, tc.policy)
			if !slices.Equal(again, got) {
				t.Error("not deterministic")
			}
		})
	}
}

func TestPruneErrors(t *testing.T) {
	if _, err := Prune(history(3, 0), Retention{Protect: []uint64{777}}); !errors.Is(err, zfs.ErrDatasetNotFound) {
		t.Errorf("unknown base: %v", err)
	}
	if _, err := Prune(history(3, 0), Retention{KeepSnapshots: -1}); err == nil {
		t.Error("negative keep accepted")
	}
	bad := []zfs.Point{{Name: "p/v@a", Kind: zfs.Snapshot, GUID: 1, CreateTXG: 5}, {Name: "p/v@b", Kind: zfs.Snapshot, GUID: 2, CreateTXG: 5}}
	if _, err := Prune(bad, Retention{}); !errors.Is(err, zfs.ErrSyntax) {
		t.Errorf("inconsistent listing: %v", err)
	}
}

// TestPruneInterrupted: a prune killed after destroying the first k
// points of its result (any k) leaves a history on which the same policy
// plans exactly the remaining points, in the same order: a rerun finishes
// what the killed one started and destroys nothing it would have kept.
// The result is oldest first, and never names a protected guid or the
// last-sent bookmark. Over histories of 1..8 snapshots, each last-sent
// position, and keep counts 1..4 for snapshots and 0..4 for bookmarks.
func TestPruneInterrupted(t *testing.T) {
	cases := 0
	for n := 1; n <= 8; n++ {
		for last := 0; last <= n; last++ {
			for ks := 1; ks <= 4; ks++ {
				for kb := 0; kb <= 4; kb++ {
					pts := history(n, last)
					pol := Retention{KeepSnapshots: ks, KeepBookmarks: kb}
					if last > 0 {
						pol.Protect = []uint64{uint64(5000 + last)}
					}
					plan, err := Prune(pts, pol)
					if err != nil {
						t.Fatal(err)
					}
					for i, p := range plan {
						if slices.Contains(pol.Protect, p.GUID) || isLastSent(p) {
							t.Fatalf("n=%d last=%d keep=%d/%d: plan destroys %s", n, last, ks, kb, p.Name)
						}
						if i > 0 && p.CreateTXG < plan[i-1].CreateTXG {
							t.Fatalf("n=%d last=%d keep=%d/%d: plan not oldest first: %v", n, last, ks, kb, plan)
						}
					}
					for k := 0; k <= len(plan); k++ {
						left := without(pts, plan[:k])
						rest, err := Prune(left, pol)
						if err != nil {
							t.Fatalf("n=%d last=%d keep=%d/%d, killed after %d: %v", n, last, ks, kb, k, err)
						}
						if !slices.Equal(rest, plan[k:]) {
							t.Fatalf("n=%d last=%d keep=%d/%d, killed after %d: rerun plans %v, want %v", n, last, ks, kb, k, rest, plan[k:])
						}
						cases++
					}
				}
			}
		}
	}
	t.Logf("%d interrupted prunes replanned", cases)
}

// without returns s without the elements of drop.
func without[T comparable](s, drop []T) []T {
	return slices.DeleteFunc(slices.Clone(s), func(x T) bool { return slices.Contains(drop, x) })
}
