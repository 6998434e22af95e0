// Package replicate decides how a dataset's snapshots reach another
// dataset and what may be pruned afterwards, as pure functions over the
// listings package zfs reads:
//
//   - planning: [NewPlan] picks the common base by GUID (a snapshot or its
//     bookmark), and returns the send/receive steps ([zfs.Send]), what a
//     forced rollback would destroy and whether it must be destroyed
//     first; it refuses unrelated or diverged targets unless allowed;
//   - replication records: after each receive the sender dataset carries
//     the user property [RecordProperty](target) = "<guid> <target>"
//     ([Record], [ParseRecord]); [Bases] collects them with
//     #dmsnap-last-sent as the [Base]s retention must keep;
//   - retention: [Prune] picks the snapshots and bookmarks a [Retention]
//     policy may destroy, never a base or anything newer.
//
// It runs nothing itself except reading user properties in [Bases]
// (through a [zfs.Runner]). Hazards: never order by name or creation time
// (createtxg within a pool, guid across pools); a record whose guid is
// gone means that target's chain is broken, and pruning against it is
// refused rather than guessed. Imports zfs only.
package replicate
