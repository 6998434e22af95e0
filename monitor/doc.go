// Package monitor owns the snapshot watch loop of `dmsnap monitor`: it
// scans the kernel's classic snapshot layouts (dmsnap's and, read-only,
// LVM2's and anonymous ones), polls their status for fill and merge
// progress, reacts at once to device-mapper events (invalidation) where the
// kernel raises them, and applies the auto-extend [Policy] through an [Actions]
// implementation that the CLI provides (it takes the pool lock and commits
// the metadata like `dmsnap extend`).
//
// The policy arithmetic ([Policy.Validate], [PlanGrowth]) is pure and
// unit-tested; the loop is tested against a fake kernel. A [Monitor] is a
// [metrics.Source]: it publishes its last observation, never querying the
// kernel at scrape time.
//
// Events come from one source for all devices ([Config.Events], fed by a
// single [dm.EventWatcher] in the CLI): on each signal Run re-reads the
// status of every watched snapshot, one ioctl each, with no scan.
//
// Lifecycle hazards: [Monitor.Run] starts one goroutine per running merge
// (progress); they end when its context is cancelled and Run waits for
// them before it returns. The event source is the caller's to close.
package monitor
