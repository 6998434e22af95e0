package metrics

import (
	"sort"
	"sync"
	"time"

	"github.com/dmsnap/dmsnap/merge"
	"github.com/prometheus/client_golang/prometheus"
)

// Namespace prefixes every metric name.
const Namespace = "dmsnap"

// Snapshot is one observation of a snapshot, dmsnap's or LVM2's.
type Snapshot struct {
	// Pool is the dmsnap pool or LVM2 volume group ("" for a snapshot
	// of no known tool); Name the snapshot and Origin its origin volume.
	Pool, Name, Origin string
	// State is one of the States.
	State string
	// COWBytes is the kernel's COW size and UsedBytes what it has
	// allocated of it (metadata included); both 0 when unknown.
	COWBytes, UsedBytes uint64
	// Fill is LVM's Snap% as a ratio from 0 to 1; negative when unknown
	// (inactive, invalid).
	Fill float64
	// NoRoom is set while the snapshot is above its auto-extend
	// threshold and its pool has no free extents to grow it.
	NoRoom bool
}

// States are the values of the state label.
var States = []string{"active", "inactive", "invalid", "overflow", "merging", "merge-failed", "unknown"}

// Source returns the current snapshots. It is called at every scrape and
// must return quickly, from memory.
type Source interface {
	Snapshots() []Snapshot
}

// SourceFunc adapts a function to [Source].
type SourceFunc func() []Snapshot

// Snapshots calls f.
func (f SourceFunc) Snapshots() []Snapshot { return f() }

// Outcome is the outcome label of an auto-extend step.
type Outcome string

// Auto-extend outcomes.
const (
	Extended Outcome = "extended"
	Failed   Outcome = "failed"
	NoRoom   Outcome = "no_room"
)

// Transfer says which ZFS transfer [Metrics.RecordTransfer] records.
type Transfer string

// Transfers.
const (
	Ingest      Transfer = "ingest"
	Replication Transfer = "replication"
)

// Metrics is the set of dmsnap metrics. Its methods are safe for
// concurrent use.
type Metrics struct {
	src Source

	autoextend      *prometheus.CounterVec
	autoextendBytes *prometheus.CounterVec
	invalidated     *prometheus.CounterVec
	removed         *prometheus.CounterVec
	errors          *prometheus.CounterVec
	lastPoll        prometheus.Gauge
	transferTime    *prometheus.GaugeVec
	transferBytes   *prometheus.GaugeVec

	mu     sync.Mutex
	merges map[mergeKey]merge.Report
}

type mergeKey struct{ pool, origin string }

var snapLabels = []string{"pool", "snapshot", "origin"}

// Descriptions of the collected (not stored) metrics.
var (
	descCOWSize = prometheus.NewDesc(Namespace+"_snapshot_cow_size_bytes",
		"Size of the snapshot's exception store (COW), as the kernel reports it.", snapLabels, nil)
	descCOWUsed = prometheus.NewDesc(Namespace+"_snapshot_cow_used_bytes",
		"Bytes of the COW in use (exceptions and metadata).", snapLabels, nil)
	descFill = prometheus.NewDesc(Namespace+"_snapshot_fill_ratio",
		"LVM's Snap% as a ratio from 0 to 1; absent while unknown (inactive, invalid).", snapLabels, nil)
	descState = prometheus.NewDesc(Namespace+"_snapshot_state",
		"1 for the snapshot's current state (active, inactive, invalid, overflow, merging, merge-failed, unknown).",
		append(snapLabels[:3:3], "state"), nil)
	descNoRoom = prometheus.NewDesc(Namespace+"_snapshot_autoextend_no_room",
		"1 while the snapshot is above its auto-extend threshold and its pool has no free extents: it will be lost when full.",
		snapLabels, nil)
	descMergeProgress = prometheus.NewDesc(Namespace+"_merge_progress_ratio",
		"Merged share of a running snapshot merge, 0 to 1.", []string{"pool", "origin"}, nil)
	descMergeRemaining = prometheus.NewDesc(Namespace+"_merge_remaining_bytes",
		"Bytes a running merge still has to copy back.", []string{"pool", "origin"}, nil)
	descMergeRate = prometheus.NewDesc(Namespace+"_merge_rate_bytes_per_second",
		"Mean merge rate since the merge was first seen.", []string{"pool", "origin"}, nil)
	descMergeETA = prometheus.NewDesc(Namespace+"_merge_eta_seconds",
		"Estimated time left of a running merge; absent while unknown.", []string{"pool", "origin"}, nil)
)

// New returns the metrics over src; src may be nil (no snapshot metrics).
func New(src Source) *Metrics {
	return &Metrics{
		src: src,
		autoextend: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "autoextend_total",
			Help: "Auto-extend steps by outcome (extended, failed, no_room).",
		}, []string{"pool", "snapshot", "outcome"}),
		autoextendBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "autoextend_bytes_total",
			Help: "Bytes added to snapshot COWs by auto-extension.",
		}, []string{"pool", "snapshot"}),
		invalidated: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "snapshot_invalidated_total",
			Help: "Snapshots seen turning invalid or overflowed (their data is lost).",
		}, []string{"pool"}),
		removed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "snapshot_removed_total",
			Help: "Invalid or overflowed snapshots removed by the monitor.",
		}, []string{"pool"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "errors_total",
			Help: "Errors by operation (scan, status, wait, autoextend, remove, merge-watch, textfile).",
		}, []string{"op"}),
		lastPoll: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "monitor_last_poll_timestamp_seconds",
			Help: "Unix time of the monitor's last complete poll.",
		}),
		transferTime: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "last_transfer_timestamp_seconds",
			Help: "Unix time of the last successful ZFS ingest or replication of an origin.",
		}, []string{"pool", "origin", "op"}),
		transferBytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "last_transfer_bytes",
			Help: "Bytes of the last successful ZFS ingest or replication of an origin.",
		}, []string{"pool", "origin", "op"}),
		merges: map[mergeKey]merge.Report{},
	}
}

// Register registers every metric with r. Registering twice with one
// registry fails with r's error.
func (m *Metrics) Register(r prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m, m.autoextend, m.autoextendBytes, m.invalidated, m.removed,
		m.errors, m.lastPoll, m.transferTime, m.transferBytes} {
		if err := r.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// Describe implements [prometheus.Collector] for the collected metrics.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descCOWSize, descCOWUsed, descFill, descState, descNoRoom,
		descMergeProgress, descMergeRemaining, descMergeRate, descMergeETA} {
		ch <- d
	}
}

// Collect implements [prometheus.Collector]: the Source's snapshots and
// the merges reported through [Metrics.MergeProgress].
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	if m.src != nil {
		for _, s := range m.src.Snapshots() {
			lv := []string{s.Pool, s.Name, s.Origin}
			ch <- prometheus.MustNewConstMetric(descCOWSize, prometheus.GaugeValue, float64(s.COWBytes), lv...)
			ch <- prometheus.MustNewConstMetric(descCOWUsed, prometheus.GaugeValue, float64(s.UsedBytes), lv...)
			if s.Fill >= 0 {
				ch <- prometheus.MustNewConstMetric(descFill, prometheus.GaugeValue, s.Fill, lv...)
			}
			for _, st := range States {
				ch <- prometheus.MustNewConstMetric(descState, prometheus.GaugeValue, b2f(st == s.State), append(lv, st)...)
			}
			ch <- prometheus.MustNewConstMetric(descNoRoom, prometheus.GaugeValue, b2f(s.NoRoom), lv...)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, r := range m.merges {
		lv := []string{k.pool, k.origin}
		ch <- prometheus.MustNewConstMetric(descMergeProgress, prometheus.GaugeValue, r.Percent()/100, lv...)
		ch <- prometheus.MustNewConstMetric(descMergeRemaining, prometheus.GaugeValue, float64(r.RemainingSectors.Bytes()), lv...)
		ch <- prometheus.MustNewConstMetric(descMergeRate, prometheus.GaugeValue, r.Rate, lv...)
		if r.ETA >= 0 {
			ch <- prometheus.MustNewConstMetric(descMergeETA, prometheus.GaugeValue, r.ETA.Seconds(), lv...)
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// AutoextendStep counts one auto-extend step of pool/snapshot; grownBytes
// is what an Extended step added.
func (m *Metrics) AutoextendStep(pool, snapshot string, o Outcome, grownBytes uint64) {
	m.autoextend.WithLabelValues(pool, snapshot, string(o)).Inc()
	if o == Extended {
		m.autoextendBytes.WithLabelValues(pool, snapshot).Add(float64(grownBytes))
	}
}

// Invalidated counts a snapshot of pool seen turning invalid or
// overflowed.
func (m *Metrics) Invalidated(pool string) { m.invalidated.WithLabelValues(pool).Inc() }

// Removed counts an invalid or overflowed snapshot of pool removed.
func (m *Metrics) Removed(pool string) { m.removed.WithLabelValues(pool).Inc() }

// Error counts a failed operation op.
func (m *Metrics) Error(op string) { m.errors.WithLabelValues(op).Inc() }

// Polled records the time of a complete poll.
func (m *Metrics) Polled(t time.Time) { m.lastPoll.Set(float64(t.UnixNano()) / 1e9) }

// RecordTransfer records a successful ZFS ingest or replication of
// pool/origin: its time and size. It is the hook of the ZFS bridge.
func (m *Metrics) RecordTransfer(kind Transfer, pool, origin string, at time.Time, bytes uint64) {
	m.transferTime.WithLabelValues(pool, origin, string(kind)).Set(float64(at.UnixNano()) / 1e9)
	m.transferBytes.WithLabelValues(pool, origin, string(kind)).Set(float64(bytes))
}

// Forget drops the per-snapshot counters of pool/snapshot, once it is
// gone.
func (m *Metrics) Forget(pool, snapshot string) {
	l := prometheus.Labels{"pool": pool, "snapshot": snapshot}
	m.autoextend.DeletePartialMatch(l)
	m.autoextendBytes.DeletePartialMatch(l)
}

// MergeProgress returns a [merge.Progress] that publishes the reports of
// the merge into origin of pool.
func (m *Metrics) MergeProgress(pool, origin string) merge.Progress {
	k := mergeKey{pool, origin}
	return merge.ProgressFunc(func(r merge.Report) {
		m.mu.Lock()
		m.merges[k] = r
		m.mu.Unlock()
	})
}

// ForgetMerge drops the merge series of pool/origin.
func (m *Metrics) ForgetMerge(pool, origin string) {
	m.mu.Lock()
	delete(m.merges, mergeKey{pool, origin})
	m.mu.Unlock()
}

// Merges returns the origins with merge series, sorted, as "pool/origin".
func (m *Metrics) Merges() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]string, 0, len(m.merges))
	for k := range m.merges {
		out = append(out, k.pool+"/"+k.origin)
	}
	sort.Strings(out)
	return out
}

// AutoextendCounter returns the counter of auto-extend steps of
// pool/snapshot with outcome o (tests and callers reading it back).
func (m *Metrics) AutoextendCounter(pool, snapshot string, o Outcome) prometheus.Counter {
	return m.autoextend.WithLabelValues(pool, snapshot, string(o))
}
