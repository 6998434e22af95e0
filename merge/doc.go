// Package merge orchestrates the kernel's snapshot-merge target: it finds
// classic snapshot layouts from the kernel tables alone, hands a snapshot's
// exceptions over to a snapshot-merge table on the origin, watches the
// merge by polling, and collapses the layout when the merge is done.
//
// It owns the device-mapper half of a merge: the order of the table loads,
// suspends and resumes the kernel requires, the rollback when a step fails,
// and the polling. It does not own pool metadata: a caller that keeps a
// journal (package lvm, the CLI) records each [Step] through
// [StartOptions.OnStep] before it happens, and frees the COW extents that
// [Finish] reports as removed.
//
// The layouts it recognises are LVM2's (DM uuid prefix "LVM-", names
// "vg-lv"), dmsnap's (uuid prefix "DMSNAP-", names "pool-volume") and
// anonymous ones (any names, no uuid): a visible origin whose single target
// is snapshot-origin <real> (or snapshot-merge <real> <cow> ... while
// merging), the device <real> (LVM2's "-real", usually linear), and
// snapshot devices "snapshot <real> <cow> P|N|PO <chunk>" over the same
// <real>, each with its COW device (LVM2's "-cow").
//
// Lifecycle hazards:
//
//   - The handover has one valid order (vm.md pitfall 7): load
//     snapshot-merge into the origin's inactive slot and error into the
//     snapshot's, suspend the snapshot, suspend the origin, resume the
//     origin (the exceptions move to the merge target here), resume the
//     snapshot. Before the origin resumes, everything can be rolled back;
//     after it, the merge runs and only [Finish] tidies up.
//   - While the merge target is loaded but not resumed, the kernel refuses
//     to resume the source snapshot ("Unable to resume snapshot source until
//     handover completes"), and the snapshot must never be swapped to the
//     error table before the handover, or the merge target would lose its
//     source. Rollback therefore clears the origin's inactive table first,
//     then the snapshot's, and only then resumes.
//   - The kernel raises no event on merge progress, completion or failure
//     (verified on 6.1): [Watch] polls DM_TABLE_STATUS, one ioctl per tick.
//   - Other snapshots of the same origin stay valid through a merge: the
//     snapshot-merge target takes over snapshot-origin's role, so a write to
//     the origin, and every chunk the merge copies back, first copies the
//     old chunk out to them (K:drivers/md/dm-snap.c snapshot_merge_map,
//     snapshot_merge_next_chunks → origin_write_extent). A merge can
//     therefore fill, and invalidate, another snapshot's COW. Verified in
//     the kernel tests.
//   - A persistent store resumes an interrupted merge: loading
//     snapshot-merge on the same COW after a crash or reboot continues where
//     it stopped (each record is cleared only after its chunk was copied).
package merge
