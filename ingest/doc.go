// Package ingest carries frozen device-mapper snapshots into a ZFS zvol:
// the copy plan (which byte ranges of the snapshot to copy), the copy
// engine (holes for zero blocks), the lineage record that ties the zvol's
// dmsnap ZFS snapshots to the pool's "ingest cursor" snapshot, and the
// crash-recovery decision taken at the start of every ingest.
//
// It owns no kernel object and takes no lock: the caller (cmd/dmsnap
// ingest) creates and removes the block snapshots, opens the devices and
// persists the [Lineage]. The ZFS snapshot is the commit point; everything
// written to the zvol after the last dmsnap ZFS snapshot is provisional and
// is rolled back by the next ingest (see [Decide]). Package ingest imports
// cow and zfs only.
package ingest
