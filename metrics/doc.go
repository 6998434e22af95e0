// Package metrics owns dmsnap's Prometheus metrics: collectors over a
// [Source] of snapshot observations, a [merge.Progress] adapter for merge
// progress and ETA, counters for auto-extension, removals and errors by
// operation, a hook for ZFS ingest and replication times, and a writer of
// node_exporter textfiles.
//
// Nothing is registered globally: [Metrics.Register] takes a
// [prometheus.Registerer]. Labels are bounded sets: pool, snapshot,
// origin, state, op and outcome. Series of a snapshot or merge that is gone
// are dropped by [Metrics.Forget] and [Metrics.ForgetMerge], so the number
// of series follows the number of live snapshots.
//
// The collector reads the Source at scrape time and must not block: a
// Source returns its last observation, it does not query the kernel.
package metrics
