// Package restore restores a ZFS zvol snapshot back onto a dmsnap volume
// (issue #18). Its planning ([Full], [Differential], [CheckLineage]) is
// pure logic: which byte ranges of the volume must be copied from the
// snapshot, and why. It opens devices and runs zfs(8) only through the
// interfaces [Run] is given.
//
// A differential restore onto the zvol's own ingest origin copies the
// union of
//
//   - the origin's writes since the last ingest: the changed chunks of the
//     current ingest cursor's COW (as incremental ingest reads them,
//     [ingest.IncrementalPlan]), and
//   - the blocks ZFS changed between SNAP and the last ingest snapshot
//     LAST: the DRR_WRITE/DRR_FREE ranges of the zvol's data object in
//     `zfs send -i @SNAP @LAST` ([sendstream.ZvolChanges]),
//
// widened to the zvol's volblocksize and clipped at the volume size.
// Every other block is equal in the origin and SNAP: the origin equals
// LAST plus the cursor's writes, and LAST equals SNAP outside the stream's
// ranges. Whether the lineage proves that the origin is at LAST plus the
// cursor's writes is the caller's decision (ingest's lineage record);
// when it does not, the caller plans [Full].
//
// [Run] executes a restore (full into a new or existing volume, or
// differential onto the ingest origin), with a pre-restore snapshot as
// the undo, an intent record for crash safety and a verification; the
// pool, locks and lineage come through [Env], ZFS through [Source]
// ([ZFSSource] reads SNAP through a temporary read-only clone).
//
// Hazards: a refused restore changes nothing; once the intent is
// recorded the volume may be a mix until the restore is finished (rerun)
// or rolled back (merge of the pre-restore snapshot).
//
// Imports ingest (its Range, plan arithmetic, copy loop and lineage),
// cow, zfs and zfs/sendstream.
package restore
