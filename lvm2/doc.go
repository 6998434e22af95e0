// Package lvm2 drives LVM2's own tools (lvm(8): lvs, vgs, lvcreate,
// lvremove, lvextend, lvrename, lvconvert, lvchange) for volume groups
// that LVM2 owns. It is not package lvm, which is dmsnap's own pool
// format: lvm writes dmsnap's metadata and builds device-mapper tables
// itself, while lvm2 never writes LVM2 metadata and never touches a
// device-mapper device. LVM2 keeps its metadata, its locking and its
// activation; this package only asks it, through one exec wrapper
// ([Runner]).
//
// Every command runs as "lvm <command> <args>" with argv only (no shell),
// every read uses "--reportformat json --units b --nosuffix", and every
// failure is a *[CommandError] classified from LVM2's standard error into
// the sentinels below. LVM_SUPPRESS_FD_WARNINGS=1 is always set so that
// descriptors inherited from the caller do not make LVM2 print warnings.
//
// Snapshots dmsnap makes carry the tag [CursorTag]; [CheckOwned] refuses
// any other snapshot unless the caller allows it explicitly, so dmsnap
// never removes, extends or merges a snapshot it did not make by accident.
//
// Lifecycle hazards: LVM2 serialises commands on per-VG file locks
// (locking_dir); a command waits for another lvm process and then fails
// with [ErrLocked]. A merge whose origin is open is deferred by LVM2 until
// the origin is next activated ([MergeResult.Pending]). The COW device of
// a classic snapshot (LV.COWDMName) is read by package cow through the
// kernel, never through this package.
//
// The package imports nothing but the standard library.
package lvm2
