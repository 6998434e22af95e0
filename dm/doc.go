// Package dm is a typed device-mapper API.
//
// It has two halves. The pure half describes device-mapper objects without
// a kernel: a [Table] is a list of [Segment]s, each mapping a sector range
// to a typed [Target] ([Linear], [Error], [Zero], [SnapshotOrigin],
// [Snapshot], [SnapshotMerge]); a [Status] is the typed form of a target's
// status line ([SnapshotStatus] for snapshot and snapshot-merge). Tables
// can be built, validated, printed in dmsetup's form, parsed back and
// compared; parsers accept exactly what the kernel prints, and builders emit
// it byte for byte. Errors of this half wrap [ErrSyntax], [ErrInvalidTable]
// or [ErrUnknownTarget] and quote the offending text.
//
// The live half is a Client speaking the DM ioctl protocol on
// /dev/mapper/control and Device handles to kernel objects. Everything
// kernel-dependent happens when a Table is loaded into a Device or a status
// line is read back from one.
//
// Lifecycle hazards:
//
//   - A table is loaded into a device's inactive slot and takes effect only
//     on resume; an abandoned inactive table must be cleared.
//   - While a device is suspended, I/O to it and to everything stacked
//     above it blocks. Do no I/O, allocation-heavy work or journalling
//     between suspend and resume; go through the single suspend helper,
//     which resumes in a defer.
//   - A snapshot table reads its whole exception store at load time, so the
//     COW device must be resumed before the snapshot table is loaded.
//   - A snapshot-merge table takes the exceptions over from the live
//     snapshot using the same COW only while that snapshot is suspended;
//     afterwards the old snapshot reports Invalid.
//   - Merge progress and completion raise no device-mapper event: poll the
//     status ([SnapshotStatus.MergeDone]).
package dm
