package retention

import (
	"fmt"
	"strings"
	"time"

	"github.com/dmsnap/dmsnap/zfs"
)

// Policy is what [Apply] applies to one dataset's points.
type Policy struct {
	// Snapshots is the grid for snapshots.
	Snapshots Grid
	// Bookmarks is the grid for bookmarks, applied to bookmarks alone;
	// nil keeps every bookmark.
	Bookmarks *Grid
	// Location is the time zone periods are counted in (where a day
	// starts); nil means UTC.
	Location *time.Location
	// Protect lists replication bases by guid: a point with one of these
	// guids, and every point newer (by createtxg) than the oldest of
	// them, is kept.
	Protect []uint64
	// Source lists the guids of the replication source's snapshots and
	// bookmarks when the dataset is a replication target: the target's
	// newest snapshot with one of these guids (the base of the next
	// incremental receive) is kept. nil on a source.
	Source []uint64
	// Foreign also applies the grid to points without dmsnap names; by
	// default such points are kept untouched ([zfs.IsOurs]).
	Foreign bool
}

// Decision is the verdict on one point.
type Decision struct {
	Point  zfs.Point
	Keep   bool
	Reason string // why it is kept or may be destroyed
}

// Apply decides, for every point, whether policy keeps it, and why.
// Decisions come in createtxg order (oldest first; a snapshot before its
// bookmarks) whatever the order of points, and Apply of the kept points
// keeps them all. Whatever the grid says, Apply keeps:
//
//   - a replication base (a guid in Protect) and every point newer than
//     the oldest base, snapshots and bookmarks alike;
//   - the newest snapshot, and the newest dmsnap snapshot (ingest's
//     rollback point);
//   - on a target, the newest snapshot whose guid the source has;
//   - [zfs.LastSentBookmark], and (unless Foreign) points dmsnap did not
//     name.
//
// Errors: an empty or malformed grid (wrapping [ErrSyntax]; a zero
// Policy would destroy all but the newest snapshot), points that mix datasets (wrapping [zfs.ErrSyntax]), and a
// protected guid absent from points (wrapping [zfs.ErrDatasetNotFound]):
// without the base's createtxg nothing can be pruned safely.
func Apply(points []zfs.Point, policy Policy) ([]Decision, error) {
	if err := policy.Snapshots.validate("snapshot"); err != nil {
		return nil, err
	}
	if policy.Bookmarks != nil {
		if err := policy.Bookmarks.validate("bookmark"); err != nil {
			return nil, err
		}
	}
	pts := append([]zfs.Point(nil), points...)
	if err := zfs.SortPoints(pts); err != nil {
		return nil, fmt.Errorf("retention: %w", err)
	}
	loc := policy.Location
	if loc == nil {
		loc = time.UTC
	}
	reasons := make([][]string, len(pts))
	keep := func(i int, format string, args ...any) {
		reasons[i] = append(reasons[i], fmt.Sprintf(format, args...))
	}

	// Replication bases and everything newer than the oldest.
	protected := make(map[uint64]bool, len(policy.Protect))
	for _, g := range policy.Protect {
		protected[g] = true
	}
	// horizon is the createtxg of the oldest base (0: none). Bases are
	// looked up in the caller's order, so the first missing one is the
	// one reported.
	var horizon uint64
	for _, g := range policy.Protect {
		i := indexGUID(pts, g)
		if i < 0 {
			return nil, fmt.Errorf("retention: replication base guid %d is neither a snapshot nor a bookmark here: %w", g, zfs.ErrDatasetNotFound)
		}
		if horizon == 0 || pts[i].CreateTXG < horizon {
			horizon = pts[i].CreateTXG
		}
	}
	// ours[i]: dmsnap named pts[i]; eligible[i]: a grid may destroy it.
	ours := make([]bool, len(pts))
	eligible := make([]bool, len(pts))
	for i, p := range pts {
		ours[i] = zfs.IsOurs(p)
		eligible[i] = !isLastSent(p) && (policy.Foreign || ours[i])
	}
	for i, p := range pts {
		switch {
		case protected[p.GUID]:
			keep(i, "replication base (guid %d)", p.GUID)
		case horizon != 0 && p.CreateTXG > horizon:
			keep(i, "newer than the oldest replication base (createtxg %d > %d)", p.CreateTXG, horizon)
		}
		if isLastSent(p) {
			keep(i, "the stable bookmark %s", zfs.LastSentBookmark)
		} else if !eligible[i] {
			keep(i, "not named by dmsnap")
		}
	}

	// The newest snapshot, the newest dmsnap snapshot, the newest common
	// snapshot with the source.
	newest, newestOurs, common := -1, -1, -1
	source := make(map[uint64]bool, len(policy.Source))
	for _, g := range policy.Source {
		source[g] = true
	}
	for i, p := range pts {
		if p.Kind != zfs.Snapshot {
			continue
		}
		newest = i
		if ours[i] {
			newestOurs = i
		}
		if source[p.GUID] {
			common = i
		}
	}
	if newest >= 0 {
		keep(newest, "newest snapshot")
	}
	if newestOurs >= 0 && newestOurs != newest {
		keep(newestOurs, "newest dmsnap snapshot")
	}
	if common >= 0 {
		keep(common, "newest snapshot in common with the source (guid %d)", pts[common].GUID)
	}

	// The grids.
	grids := []struct {
		kind zfs.Kind
		grid *Grid
	}{{zfs.Snapshot, &policy.Snapshots}, {zfs.Bookmark, policy.Bookmarks}}
	for _, k := range grids {
		if k.grid == nil {
			for i, p := range pts {
				if p.Kind == k.kind && eligible[i] {
					keep(i, "bookmarks are kept (no bookmark grid)")
				}
			}
			continue
		}
		for _, r := range k.grid.Rules {
			seen := map[int64]bool{}
			for i := len(pts) - 1; i >= 0 && len(seen) < r.Count; i-- {
				p := pts[i]
				if p.Kind != k.kind || !eligible[i] {
					continue
				}
				key, label := int64(i), ""
				if r.Period != Latest {
					key, label = bucket(r.Period, p.Creation, loc)
				}
				if seen[key] {
					continue
				}
				seen[key] = true
				if r.Period == Latest {
					keep(i, "latest %d of %d", len(seen), r.Count)
				} else {
					keep(i, "%s %s (%d of %d)", r.Period, label, len(seen), r.Count)
				}
			}
		}
	}

	out := make([]Decision, len(pts))
	for i, p := range pts {
		d := Decision{Point: p, Keep: len(reasons[i]) > 0}
		switch {
		case d.Keep:
			d.Reason = strings.Join(reasons[i], "; ")
		case p.Kind == zfs.Bookmark:
			d.Reason = "no rule of the bookmark grid (" + policy.Bookmarks.String() + ") keeps it"
		default:
			d.Reason = "no rule of the snapshot grid (" + policy.Snapshots.String() + ") keeps it"
		}
		out[i] = d
	}
	return out, nil
}

// Destroy returns the points of ds that are not kept, in createtxg order.
func Destroy(ds []Decision) []zfs.Point {
	var out []zfs.Point
	for _, d := range ds {
		if !d.Keep {
			out = append(out, d.Point)
		}
	}
	return out
}

func indexGUID(pts []zfs.Point, g uint64) int {
	for i, p := range pts {
		if p.GUID == g {
			return i
		}
	}
	return -1
}

func isLastSent(p zfs.Point) bool {
	return p.Kind == zfs.Bookmark && p.Short() == zfs.LastSentBookmark
}
