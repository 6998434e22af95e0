package replicate

import (
	"errors"
	"fmt"
	"github.com/dmsnap/dmsnap/zfs"
)

// Retention is a pruning policy for [Prune].
type Retention struct {
	// KeepSnapshots is how many of the newest candidate snapshots to
	// keep.
	KeepSnapshots int
	// KeepBookmarks is the bookmark window: how many of the newest
	// candidate bookmarks to keep.
	KeepBookmarks int
	// Protect lists replication bases by GUID. A point with a protected
	// GUID, and every point newer (by createtxg) than the oldest protected
	// one, is never pruned.
	Protect []uint64
	// Foreign also makes points without dmsnap names candidates; by
	// default only [zfs.IsOurs] points are ever pruned.
	Foreign bool
}

// Prune returns the snapshots and bookmarks to destroy under policy, in
// createtxg order (oldest first; a snapshot before its bookmarks). It
// never returns a point whose GUID is protected, anything newer than the
// oldest protected point, [zfs.LastSentBookmark], or (unless Foreign) a point
// dmsnap did not name. A protected GUID absent from points is an error
// wrapping [zfs.ErrDatasetNotFound]: without the base's createtxg nothing can
// be pruned safely.
func Prune(points []zfs.Point, policy Retention) ([]zfs.Point, error) {
	if policy.KeepSnapshots < 0 || policy.KeepBookmarks < 0 {
		return nil, errors.New("prune: negative keep count")
	}
	pts := append([]zfs.Point(nil), points...)
	if err := zfs.SortPoints(pts); err != nil {
		return nil, fmt.Errorf("prune: %w", err)
	}
	protected := make(map[uint64]bool, len(policy.Protect))
	for _, g := range policy.Protect {
		protected[g] = true
	}
	var horizon uint64 // createtxg of the oldest protected point; 0 = none
	for g := range protected {
		i := indexFunc(pts, func(p zfs.Point) bool { return p.GUID == g })
		if i < 0 {
			return nil, fmt.Errorf("prune: protected guid %d is neither a snapshot nor a bookmark here: %w", g, zfs.ErrDatasetNotFound)
		}
		if horizon == 0 || pts[i].CreateTXG < horizon {
			horizon = pts[i].CreateTXG
		}
	}

	// Candidates: ours (or all with Foreign), not protected, not newer
	// than the horizon, not the stable bookmark.
	candidate := func(p zfs.Point) bool {
		switch {
		case protected[p.GUID]:
			return false
		case horizon != 0 && p.CreateTXG > horizon:
			return false
		case isLastSent(p):
			return false
		case !policy.Foreign && !zfs.IsOurs(p):
			return false
		}
		return true
	}
	doomed := make(map[int]bool)
	for _, k := range []struct {
		kind zfs.Kind
		keep int
	}{{zfs.Snapshot, policy.KeepSnapshots}, {zfs.Bookmark, policy.KeepBookmarks}} {
		// Keep the newest `keep` points of this kind among those that
		// could be pruned by name (protected ones count towards the
		// window; the stable bookmark does not).
		kept := 0
		for i := len(pts) - 1; i >= 0; i-- {
			p := pts[i]
			if p.Kind != k.kind || isLastSent(p) || (!policy.Foreign && !zfs.IsOurs(p)) {
				continue
			}
			if kept < k.keep {
				kept++
				continue
			}
			if candidate(p) {
				doomed[i] = true
			}
		}
	}
	var out []zfs.Point
	for i, p := range pts {
		if doomed[i] {
			out = append(out, p)
		}
	}
	return out, nil
}

func isLastSent(p zfs.Point) bool { return p.Kind == zfs.Bookmark && p.Short() == zfs.LastSentBookmark }
