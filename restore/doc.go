// Package restore plans restores from a ZFS zvol snapshot back onto a
// dmsnap volume (issue #18). It is pure logic: it decides which byte
// ranges of the volume must be copied from the snapshot and says why; it
// opens no device and runs no command.
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
// Imports ingest (its Range and plan arithmetic), cow and zfs/sendstream.
package restore
