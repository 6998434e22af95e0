package dm

import (
	"fmt"
	"strconv"
	"strings"
)

//go:generate go run golang.org/x/tools/cmd/stringer@v0.52.0 -type SnapshotState -trimprefix Snapshot -output snapshotstate_string.go

// SnapshotState is the condition a snapshot or snapshot-merge target
// reports in its status. Only SnapshotActive carries usage numbers.
type SnapshotState int

// Snapshot states, in the order the kernel checks them
// (K:drivers/md/dm-snap.c snapshot_status).
const (
	// SnapshotActive: the status is "<allocated>/<total> [<metadata>]".
	SnapshotActive SnapshotState = iota
	// SnapshotInvalid ("Invalid"): the snapshot was invalidated (COW full
	// under P, I/O error, or handed over to a merge); I/O to it fails.
	SnapshotInvalid
	// SnapshotMergeFailed ("Merge failed"): a snapshot-merge stopped on an
	// error.
	SnapshotMergeFailed
	// SnapshotOverflow ("Overflow"): a PO snapshot filled up through writes
	// to itself; reads still work.
	SnapshotOverflow
	// SnapshotUnknown ("Unknown"): the store reports no usage.
	SnapshotUnknown
)

// Kernel status words of the non-active states.
const (
	statusInvalid     = "Invalid"
	statusMergeFailed = "Merge failed"
	statusOverflow    = "Overflow"
	statusUnknown     = "Unknown"
)

// Status is the typed INFO status (dmsetup status) of one target:
// [SnapshotStatus], [EmptyStatus] or [RawStatus]. Params formats it as the
// kernel prints it.
type Status interface {
	Params() string
	status()
}

// EmptyStatus is the status of targets that report nothing: linear, error,
// zero and snapshot-origin.
type EmptyStatus struct{}

// Params returns "".
func (EmptyStatus) Params() string { return "" }
func (EmptyStatus) status()        {}

// RawStatus is the status of a target type this package does not type
// (thin, crypt, ...), kept as the kernel returned it.
type RawStatus struct {
	Line TargetLine
}

// Params returns the kernel's status parameters unchanged.
func (r RawStatus) Params() string { return r.Line.Params }
func (RawStatus) status()          {}

// SnapshotStatus is the status of a snapshot or snapshot-merge target. The
// numbers are set only in SnapshotActive; all are in sectors of the COW
// device (K:dm-snap-persistent.c persistent_usage, dm-snap-transient.c
// transient_usage):
//
//   - Allocated: chunks in use, metadata chunks included. It shrinks while
//     a snapshot-merge progresses.
//   - Total: the COW device size.
//   - Metadata: header and exception-area chunks; 0 for a transient store.
//     Kernels before snapshot target 1.8.0 omit it (HasMetadata false).
type SnapshotStatus struct {
	State       SnapshotState
	Allocated   Sector
	Total       Sector
	Metadata    Sector
	HasMetadata bool
}

// Used returns the sectors holding copied-out data: Allocated minus
// Metadata.
func (s SnapshotStatus) Used() Sector { return s.Allocated - s.Metadata }

// Percent returns how full the COW is, as lvs shows Snap%, following LVM2's
// rule (lib/snapshot/snapshot.c _snap_target_percent): 0 when Allocated
// equals Metadata (empty, or a merge is complete), 100 when Allocated equals
// Total, otherwise Allocated/Total*100. An Overflow snapshot is full and
// returns 100; Invalid, Merge failed and Unknown have no usage and return
// -1, as LVM2's DM_PERCENT_INVALID.
func (s SnapshotStatus) Percent() float64 {
	switch s.State {
	case SnapshotActive:
	case SnapshotOverflow:
		return 100
	default:
		return -1
	}
	switch {
	case s.HasMetadata && s.Allocated == s.Metadata:
		return 0
	case s.Allocated == s.Total:
		return 100
	}
	return float64(s.Allocated) / float64(s.Total) * 100
}

// MergeDone reports whether a snapshot-merge has merged every chunk: the
// state is active and Allocated equals Metadata
// (Documentation/admin-guide/device-mapper/snapshot.rst, "How to determine
// when a merging is complete").
//
// Only persistent stores merge, and a live one always counts its header
// and first area, so "0/N 0" — a snapshot-merge table read between its
// table swap and the handover of the exceptions — is not done.
func (s SnapshotStatus) MergeDone() bool {
	return s.State == SnapshotActive && s.HasMetadata && s.Metadata > 0 && s.Allocated == s.Metadata
}

// MergeRemaining returns the sectors a snapshot-merge still has to merge:
// Allocated minus Metadata, or 0 without usage numbers.
func (s SnapshotStatus) MergeRemaining() Sector {
	if s.State != SnapshotActive || !s.HasMetadata {
		return 0
	}
	return s.Allocated - s.Metadata
}

// Params formats s as the kernel prints it.
func (s SnapshotStatus) Params() string {
	switch s.State {
	case SnapshotActive:
	case SnapshotInvalid:
		return statusInvalid
	case SnapshotMergeFailed:
		return statusMergeFailed
	case SnapshotOverflow:
		return statusOverflow
	case SnapshotUnknown:
		return statusUnknown
	default:
		return s.State.String()
	}
	b := make([]byte, 0, 64)
	b = strconv.AppendUint(b, uint64(s.Allocated), 10)
	b = append(b, '/')
	b = strconv.AppendUint(b, uint64(s.Total), 10)
	if s.HasMetadata {
		b = append(b, ' ')
		b = strconv.AppendUint(b, uint64(s.Metadata), 10)
	}
	return string(b)
}

func (SnapshotStatus) status() {}

// ParseSnapshotStatus parses the status parameters of a snapshot or
// snapshot-merge target: "<allocated>/<total> <metadata>", the pre-1.8.0
// "<allocated>/<total>", or one of "Invalid", "Merge failed", "Overflow",
// "Unknown". Any other text, a total of 0, allocated above total or metadata
// above allocated is an error wrapping [ErrSyntax] that quotes params; the
// result is then the zero SnapshotStatus.
func ParseSnapshotStatus(params string) (SnapshotStatus, error) {
	p := strings.TrimSpace(params)
	switch p {
	case statusInvalid:
		return SnapshotStatus{State: SnapshotInvalid}, nil
	case statusMergeFailed:
		return SnapshotStatus{State: SnapshotMergeFailed}, nil
	case statusOverflow:
		return SnapshotStatus{State: SnapshotOverflow}, nil
	case statusUnknown:
		return SnapshotStatus{State: SnapshotUnknown}, nil
	}
	s, err := parseSnapshotUsage(p)
	if err != nil {
		return SnapshotStatus{}, fmt.Errorf("snapshot status %q: %w", params, err)
	}
	return s, nil
}

func parseSnapshotUsage(p string) (SnapshotStatus, error) {
	s := SnapshotStatus{State: SnapshotActive}
	usage, meta, hasMeta := strings.Cut(p, " ")
	alloc, total, ok := strings.Cut(usage, "/")
	if !ok {
		return s, syntaxErrorf("want <allocated>/<total> [<metadata>] or a state word")
	}
	var err error
	if s.Allocated, err = parseSector("allocated", alloc); err != nil {
		return s, err
	}
	if s.Total, err = parseSector("total", total); err != nil {
		return s, err
	}
	if hasMeta {
		if s.Metadata, err = parseSector("metadata", meta); err != nil {
			return s, err
		}
		s.HasMetadata = true
	}
	switch {
	case s.Total == 0:
		return s, syntaxErrorf("total is 0")
	case s.Allocated > s.Total:
		return s, syntaxErrorf("allocated %d above total %d", s.Allocated, s.Total)
	case s.Metadata > s.Allocated:
		return s, syntaxErrorf("metadata %d above allocated %d", s.Metadata, s.Allocated)
	}
	return s, nil
}

// ParseStatus parses one status line into the typed status of its target
// type: [SnapshotStatus] for snapshot and snapshot-merge, [EmptyStatus] for
// linear, error, zero and snapshot-origin. Other target types are not an
// error: they give a [RawStatus] holding l, so that any device can be shown.
// A known type with unexpected parameters gives an error wrapping
// [ErrSyntax].
func ParseStatus(l TargetLine) (Status, error) {
	switch l.Type {
	case TypeSnapshot, TypeSnapshotMerge:
		s, err := ParseSnapshotStatus(l.Params)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", l.Type, err)
		}
		return s, nil
	case TypeLinear, TypeError, TypeZero, TypeSnapshotOrigin:
		if strings.TrimSpace(l.Params) != "" {
			return nil, syntaxErrorf("%s status %q: want none", l.Type, l.Params)
		}
		return EmptyStatus{}, nil
	}
	return RawStatus{Line: l}, nil
}
