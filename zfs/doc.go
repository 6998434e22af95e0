// Package zfs is dmsnap's bridge to OpenZFS: it runs zfs(8), zpool(8) and
// udev's zvol_id, and parses what they print. Planning replication and
// retention over those listings is package replicate's. Stdlib only.
//
// It owns:
//
//   - one exec wrapper, [Runner]: every command goes through
//     [Runner.Run], never a shell, cancellable through its context, timed
//     through an [Observer] hook (a metrics package adapts it; labels are
//     the bounded binary and verb);
//   - typed errors: a failed command is a *[CommandError] that quotes the
//     command and its standard error and answers errors.Is for a sentinel
//     classified from that text ([ErrDatasetNotFound], [ErrExists],
//     [ErrBusy], [ErrNoModule], [ErrZFSNotInstalled], ...). Each pattern
//     names its OpenZFS source and whether it was verified against a real
//     zfs in tests/loopback;
//   - listings: [Point]s (snapshots and bookmarks) from `zfs list -Hp`,
//     always ordered by createtxg, identified by guid;
//   - the version guard: [ParseVersion] and [CheckVersions];
//   - the steps of a replication ([Send]) and their argv ([SendArgs],
//     [ReceiveArgs]);
//   - a zvol's block device ([Runner.ZvolDevice], through zvol_id);
//   - names of dmsnap's snapshots and bookmarks ([SnapshotName]);
//   - running zfs on another host through a wrapper such as ssh
//     ([Runner.Via]), refusing any argument a remote shell would
//     reinterpret ([CheckRemoteArg]);
//   - resumable receives ([Runner.ResumeInfo], [Runner.AbortReceive]) and
//     user properties ([Runner.UserProperties], [Runner.SetUserProperty]).
//
// Hazards:
//
//   - Never choose a base, or order points, by name or creation time:
//     creation has one-second resolution and names lie. Use createtxg
//     within a pool and guid across pools.
//   - `zfs receive -F` destroys receiver snapshots newer than the base;
//     plans use it only when asked, and then list what it destroys.
//   - Bookmark every sent snapshot: the bookmark keeps the incremental
//     chain alive after the snapshot is pruned. A bookmark can only be the
//     source of `send -i`, never of `-I`.
//   - Userland 2.3.2 on a 2.3.1 kernel module breaks `send -I`; the guard
//     then makes plans use a chain of `-i`.
//   - Names reach zfs as separate argv entries; a "#" would start a
//     comment in any shell or remote (ssh) command line.
package zfs
