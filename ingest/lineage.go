package ingest

import (
	"errors"
	"fmt"
	"time"

	"github.com/dmsnap/dmsnap/zfs"
)

// ErrLineage: the zvol's ZFS history does not match the lineage dmsnap
// recorded (its last ingest snapshot is gone, or someone took snapshots
// after it); ingesting would mix unrelated histories.
var ErrLineage = errors.New("zvol history does not match the ingest lineage")

// ErrNotOurs: the zvol was not created by dmsnap ingest for this origin.
var ErrNotOurs = errors.New("zvol not created by dmsnap ingest for this origin")

// OwnerProperty is the ZFS user property dmsnap ingest sets on the zvols
// it creates, atomically with `zfs create`: "POOL/ORIGIN". A zvol without
// it is never written.
const OwnerProperty = "dmsnap:ingest-origin"

// Lineage is what dmsnap remembers about the ingests of one origin into
// one zvol: the last committed ZFS snapshot (identified by GUID, ordered
// by createtxg) and the pool snapshot that is the ingest cursor. It is
// kept in dmsnap's state file, keyed by dataset.
type Lineage struct {
	Dataset string `json:"dataset"`
	Pool    string `json:"pool"`
	Origin  string `json:"origin"`
	// Seq is the sequence number of the last committed ingest.
	Seq uint64 `json:"seq"`
	// Cursor is the pool snapshot taken by the last committed ingest, ""
	// before the first commit.
	Cursor string `json:"cursor,omitempty"`
	// Snapshot, GUID and CreateTXG are the last committed ZFS snapshot.
	Snapshot  string `json:"snapshot,omitempty"`
	GUID      uint64 `json:"guid,omitempty"`
	CreateTXG uint64 `json:"createtxg,omitempty"`
	// Pending is set while an ingest runs: recorded before the new pool
	// snapshot is taken, cleared after the ZFS snapshot is recorded.
	Pending *Pending `json:"pending,omitempty"`
}

// Pending is an ingest in progress.
type Pending struct {
	Seq uint64 `json:"seq"`
	// Cursor is the new pool snapshot (the next cursor).
	Cursor string `json:"cursor"`
	// Snapshot is the full name of the ZFS snapshot that will commit it.
	Snapshot string `json:"snapshot"`
	// CreatedZvol says this ingest created the zvol.
	CreatedZvol bool      `json:"created_zvol,omitempty"`
	Started     time.Time `json:"started"`
}

// CursorName returns the name of the pool snapshot of ingest seq of
// origin: "<origin>-ingest-<seq>".
func CursorName(origin string, seq uint64) string {
	return fmt.Sprintf("%s-ingest-%d", origin, seq)
}

// Action is what an ingest must do to the zvol before copying.
type Action int

// Actions returned by [Decide].
const (
	// Proceed: the zvol is at its last dmsnap snapshot.
	Proceed Action = iota
	// Adopt: the pending ingest committed (its ZFS snapshot exists) but
	// dmsnap stopped before recording it; finish the bookkeeping.
	Adopt
	// Rollback: the zvol has writes after the last dmsnap snapshot (a
	// crash mid-copy, or foreign writes); `zfs rollback` to it.
	Rollback
	// Dirty: an interrupted first ingest left a zvol without any dmsnap
	// snapshot; the full copy must write zeros too (it is not known
	// zero).
	Dirty
)

// Decide compares the lineage with the zvol's points (in createtxg order,
// [zfs.Runner.Points]) and its written property (bytes written since the
// most recent snapshot) and says what to do before copying. A lineage
// with a committed snapshot that is missing, or followed by newer
// snapshots, is [ErrLineage].
func Decide(l Lineage, pts []zfs.Point, written uint64) (Action, error) {
	if l.Pending != nil {
		for _, p := range pts {
			if p.Kind == zfs.Snapshot && p.Name == l.Pending.Snapshot {
				return Adopt, nil
			}
		}
	}
	if l.GUID == 0 {
		var theirs []string
		for _, p := range pts {
			if p.Kind == zfs.Snapshot {
				theirs = append(theirs, p.Name)
			}
		}
		if len(theirs) > 0 {
			return 0, fmt.Errorf("%s has snapshots %v but dmsnap never committed an ingest into it: %w", l.Dataset, theirs, ErrLineage)
		}
		if l.Pending != nil || written > 0 {
			return Dirty, nil
		}
		return Proceed, nil
	}
	last := -1
	for i, p := range pts {
		if p.Kind == zfs.Snapshot && p.GUID == l.GUID {
			last = i
		}
	}
	if last < 0 {
		return 0, fmt.Errorf("%s: the last ingest snapshot %s (guid %d) is gone: %w", l.Dataset, l.Snapshot, l.GUID, ErrLineage)
	}
	if pts[last].CreateTXG != l.CreateTXG {
		return 0, fmt.Errorf("%s: snapshot guid %d has createtxg %d, recorded %d: %w", l.Dataset, l.GUID, pts[last].CreateTXG, l.CreateTXG, ErrLineage)
	}
	// A newer snapshot, or a bookmark of one since destroyed, is foreign
	// history: zfs rollback (without -r) refuses to destroy either.
	for _, p := range pts[last+1:] {
		if p.CreateTXG > l.CreateTXG {
			return 0, fmt.Errorf("%s: %s is newer than the last ingest %s: %w", l.Dataset, p.Name, l.Snapshot, ErrLineage)
		}
	}
	if l.Pending != nil || written > 0 {
		return Rollback, nil
	}
	return Proceed, nil
}

// Committed returns l after the pending ingest committed as point p.
func (l Lineage) Committed(p zfs.Point) Lineage {
	n := l
	if l.Pending != nil {
		n.Seq, n.Cursor = l.Pending.Seq, l.Pending.Cursor
	}
	n.Snapshot, n.GUID, n.CreateTXG = p.Name, p.GUID, p.CreateTXG
	n.Pending = nil
	return n
}

// Relink rebuilds a lost lineage (the state file is gone or was rewritten
// without it) from the zvol's points: the newest snapshot, if dmsnap
// named it ([zfs.IsOurs]), becomes the last committed ingest, with its
// sequence number from the name. There is no cursor, so the next ingest
// is a full copy. ok is false when the newest snapshot is not dmsnap's or
// there is none.
func Relink(l Lineage, pts []zfs.Point) (Lineage, bool) {
	var newest *zfs.Point
	for i := range pts {
		if pts[i].Kind == zfs.Snapshot && (newest == nil || pts[i].CreateTXG > newest.CreateTXG) {
			newest = &pts[i]
		}
	}
	if newest == nil || !zfs.IsOurs(*newest) {
		return l, false
	}
	_, seq, ok := zfs.ParseSnapshotName(newest.Short())
	if !ok {
		return l, false
	}
	n := l
	n.Seq, n.Cursor, n.Pending = seq, "", nil
	n.Snapshot, n.GUID, n.CreateTXG = newest.Name, newest.GUID, newest.CreateTXG
	return n, true
}
