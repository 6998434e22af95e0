// Package lvm owns dmsnap's LVM-style pools: volume groups ([Pool]) of
// physical volumes ([PV]) split into extents, volumes carved from them as
// device-mapper linear segments, snapshot records, and the crash-safe
// on-disk metadata that describes all of it.
//
// It has three layers:
//
//   - The model is pure. A [Pool] is a description: names, UUIDs, extent
//     runs, snapshot records, pending operations. Operations such as
//     [Pool.AddVolume] or [Pool.ExtendVolume] return a modified copy and
//     never touch the receiver, so a refused operation changes nothing.
//     The extent allocator ([Pool.Allocate]) is contiguous-first, then
//     fill. Sizes are parsed by [ParseSize] and rounded up to extents by
//     [ExtentsFor].
//   - The store binds a description to [Disk]s. Every PV carries a label
//     at sector 1 and a metadata area with two slots; [Store.Commit]
//     writes the new description into each PV's spare slot and syncs,
//     so a crash at any byte leaves the old or the new description
//     readable, never a mixture; [Load] takes the newest valid copy over
//     all PVs and reports damaged slots, stale and missing PVs as
//     [Warning]s. docs/formats.md gives the format byte by byte, and the
//     failpoints of crash tests ([FailpointEnv]).
//   - Activation turns a description into device-mapper devices. [Plan]
//     is pure: from the pool and the device numbers of its PVs it derives
//     every device (names and UUIDs after LVM2: [DMName], [DMUUID]).
//     [Reconcile] compares that with the kernel's devices and yields
//     actions; [Apply] and [Activate] execute them through the small
//     [Kernel] interface, which *dm.Client implements.
//
// Lifecycle hazards:
//
//   - Store is not safe for concurrent use, and neither is a pool shared
//     between processes: take the pool's lock (internal/lock) exclusively
//     before Load-modify-Commit, shared for read-only use.
//   - Commit refuses while a PV is missing: metadata must reach every PV.
//   - Planned tables name other planned devices as "{name}" until the
//     referenced device exists; only [ResolveLines] output goes to the
//     kernel.
//   - Activation never suspends a device explicitly: a reload swaps the
//     table at resume. Snapshot table swaps that need an origin suspended
//     belong to the snapshot code, not here.
package lvm
