// Package retention decides which ZFS snapshots and bookmarks a retention
// grid keeps. It is pure logic over [zfs.Point] listings: no zfs calls, no
// clock. The caller lists the points, applies a [Policy] and destroys what
// [Apply] marks, so the same decision can be printed by a dry run.
//
// It owns:
//
//   - the grid syntax, "keep 24 hourly, 14 daily, 8 weekly, 12 monthly"
//     ([ParseGrid]; docs/formats.md), with errors naming the offending
//     term;
//   - bucketing: each rule keeps the newest point (by createtxg) of each
//     of its N newest periods that hold a point; the period of a point is
//     taken from its creation property in the policy's time zone;
//   - the safety rules that override any grid (see [Apply]).
//
// Hazards: order and identity come from createtxg and guid, never from
// names or creation times; a creation clock that went backwards changes
// which bucket a point falls in, never which point is newest.
package retention
