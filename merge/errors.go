package merge

import "errors"

// Sentinels. Each refusal of [Start] wraps exactly one of them, with the
// device names in the message; nothing has been changed when they are
// returned.
var (
	// ErrTransient: the snapshot has a transient (N) store, which cannot
	// merge; only P and PO stores do.
	ErrTransient = errors.New("transient (N) snapshots cannot merge; only persistent (P, PO) stores can")
	// ErrInvalidated: the snapshot is Invalid (full under P, COW I/O
	// error, or already handed over); its data is lost.
	ErrInvalidated = errors.New("unable to merge invalidated snapshot")
	// ErrOverflow: a PO snapshot reports Overflow. The merge target would
	// inherit the flag and report Overflow instead of its progress; the flag
	// is not persistent, so reactivating the snapshot clears it.
	ErrOverflow = errors.New("snapshot overflowed")
	// ErrAlreadyMerging: the origin is already running a snapshot-merge
	// (the kernel allows one per origin).
	ErrAlreadyMerging = errors.New("origin is already merging a snapshot")
	// ErrOriginOpen: the origin is open (mounted, in use). Like LVM2
	// ("Delaying merge since origin is open"), the caller should record the
	// merge as pending and start it at the next activation, or pass Force.
	ErrOriginOpen = errors.New("origin is open")
	// ErrSnapshotOpen: the snapshot device is open; after the handover all
	// its I/O fails. Defer like ErrOriginOpen, or pass Force.
	ErrSnapshotOpen = errors.New("snapshot is open")
	// ErrNotIdle: a device of the layout is suspended or has an inactive
	// table, left by an interrupted operation; see [Recover].
	ErrNotIdle = errors.New("device is suspended or has an inactive table")
	// ErrNotSnapshot: the device is not a snapshot of a visible origin
	// (no snapshot table, or no snapshot-origin device over its origin).
	ErrNotSnapshot = errors.New("not a snapshot of an active origin")
	// ErrNotMerging: the device is not an origin running snapshot-merge.
	ErrNotMerging = errors.New("not merging")
	// ErrMergeFailed: the kernel reports "Merge failed" (for example a COW
	// I/O error). The origin stays usable; retry the merge (Finish is
	// refused) or inspect the COW.
	ErrMergeFailed = errors.New("merge failed: the origin stays usable; retry the merge (reactivate the origin) or inspect the COW device")
	// ErrNotDone: [Finish] was called before the merge completed.
	ErrNotDone = errors.New("merge not done yet")
	// ErrHandoverIncomplete: the merge runs, but a step after the handover
	// (resuming the old snapshot device) failed; [Finish] cleans it up.
	ErrHandoverIncomplete = errors.New("merge started but the handover did not complete")
)
