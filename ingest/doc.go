// Package ingest carries frozen device-mapper snapshots into a ZFS zvol:
// the whole workflow ([Run]), the copy plan (which byte ranges of the
// snapshot to copy), the copy engine (holes for zero blocks), the lineage
// record that ties the zvol's dmsnap ZFS snapshots to the pool's "ingest
// cursor" snapshot, and the crash-recovery decision taken at the start of
// every ingest ([Decide]).
//
// It owns no kernel object and takes no lock itself: [Run] reaches the
// pool, the devices, the locks and the lineage store through an [Env],
// zfs(8) through a [zfs.Runner], and reports progress to an [Observer]; it
// prints nothing. The ZFS snapshot is the commit point; everything written
// to the zvol after the last dmsnap ZFS snapshot is provisional and is
// rolled back by the next ingest. Hazards: the copy runs without the
// pool's lock (only the dataset's lock and the lineage's Pending record
// protect it), so the frozen snapshot is checked again
// ([Env.CheckFrozen]) before the commit; the undo of a failed ingest runs
// under a fresh context after cancellation. Package ingest imports cow and
// zfs only.
package ingest
