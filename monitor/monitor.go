package monitor

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/dmsnap/dmsnap/dm"
	"github.com/dmsnap/dmsnap/merge"
	"github.com/dmsnap/dmsnap/metrics"
)

// Interval limits of [Config.Interval].
const (
	MinInterval     = 50 * time.Millisecond
	MaxInterval     = 10 * time.Minute
	DefaultInterval = 2 * time.Second
	// noRoomRepeat is how often a persisting no-room alert is logged again.
	noRoomRepeat = time.Minute
)

// Step is what one [Actions.Autoextend] call did.
type Step struct {
	Plan Plan
	// FromBytes and ToBytes are the COW size before and after.
	FromBytes, ToBytes uint64
	// FreeBytes is what the pool had free before the step.
	FreeBytes uint64
}

// Actions changes dmsnap snapshots; the CLI implements it with the same
// code as `dmsnap extend` and `dmsnap remove` (pool lock, metadata commit).
type Actions interface {
	// Autoextend plans the growth of pool/snapshot with [PlanGrowth]
	// against the pool's metadata under its lock, and applies Plan.Grow.
	// A Step with Plan.NoRoom and a nil error means the pool is short of
	// space.
	Autoextend(ctx context.Context, pool, snapshot string, p Policy) (Step, error)
	// Remove removes the snapshot pool/snapshot.
	Remove(ctx context.Context, pool, snapshot string) error
}

// Config configures a [Monitor].
type Config struct {
	// Kernel is read for layouts and status; only merge.Watch's reads
	// are used, the Monitor itself never changes a device.
	Kernel merge.Client
	// Events, if set, receives a value after device-mapper events (on
	// any device; [dm.EventWatcher.C] provides it). On each, [Monitor.Run]
	// re-reads the status of the snapshots it watches at once, instead of
	// waiting for the next Interval. A closed channel turns events off.
	Events <-chan struct{}
	// Actions applies auto-extension and removal to dmsnap snapshots;
	// nil makes the monitor read-only.
	Actions Actions
	// Policy returns the auto-extend policy of a dmsnap pool.
	Policy func(pool string) Policy
	// RemoveInvalid removes dmsnap snapshots that are invalid or
	// overflowed.
	RemoveInvalid bool
	// Interval is the polling period of [Monitor.Run].
	Interval time.Duration
	// Metrics receives counters and merge progress; may be nil.
	Metrics *metrics.Metrics
	// Logf logs one line; may be nil.
	Logf func(format string, args ...any)
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// AfterPoll, if set, is called after every poll of [Monitor.Run],
	// and after every re-read an event caused.
	AfterPoll func(error)
}

// observed is the monitor's memory of one snapshot device.
type observed struct {
	snap       metrics.Snapshot
	owner      merge.Owner
	device     string
	lost       bool // invalid or overflow already reported
	noRoomLast time.Time
}

// Monitor watches snapshots. Create it with [New].
type Monitor struct {
	cfg Config

	mu    sync.Mutex
	snaps []metrics.Snapshot

	// Loop state, owned by the goroutine running Poll.
	seen    map[string]*observed // by device name
	merges  map[string]*mergeWatch
	merging []metrics.Snapshot // the last Poll's merging entries
	wg      sync.WaitGroup
	running context.Context
}

type mergeWatch struct {
	pool, origin string
	done         chan struct{}
}

// New returns a Monitor; it starts nothing.
func New(cfg Config) *Monitor {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Policy == nil {
		cfg.Policy = func(string) Policy { return DefaultPolicy }
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	if cfg.Interval == 0 {
		cfg.Interval = DefaultInterval
	}
	return &Monitor{cfg: cfg, seen: map[string]*observed{}, merges: map[string]*mergeWatch{}}
}

// Snapshots implements [metrics.Source]: the last poll's observations.
func (m *Monitor) Snapshots() []metrics.Snapshot {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.snaps
}

func (m *Monitor) errorf(op, format string, args ...any) {
	if m.cfg.Metrics != nil {
		m.cfg.Metrics.Error(op)
	}
	m.cfg.Logf(format, args...)
}

// splitDMName splits "<pool>-<volume>" built with LVM2's rule (a '-'
// inside a component doubled) into its components; ok is false for any
// other name.
func splitDMName(name string) (pool, volume string, ok bool) {
	for i := 0; i < len(name); i++ {
		if name[i] != '-' {
			continue
		}
		if i+1 < len(name) && name[i+1] == '-' {
			i++
			continue
		}
		pool, volume = name[:i], name[i+1:]
		if pool == "" || volume == "" || strings.HasSuffix(volume, "-") {
			return "", "", false
		}
		return strings.ReplaceAll(pool, "--", "-"), strings.ReplaceAll(volume, "--", "-"), true
	}
	return "", "", false
}

// names returns the pool, volume name for a device of owner.
func names(owner merge.Owner, dev string) (pool, volume string) {
	if owner != merge.OwnerNone {
		if p, v, ok := splitDMName(dev); ok {
			return p, v
		}
	}
	return "", dev
}

func stateOf(st dm.SnapshotStatus, err error) string {
	if err != nil {
		return "unknown"
	}
	switch st.State {
	case dm.SnapshotActive:
		return "active"
	case dm.SnapshotInvalid:
		return "invalid"
	case dm.SnapshotOverflow:
		return "overflow"
	case dm.SnapshotMergeFailed:
		return "merge-failed"
	}
	return "unknown"
}

func (m *Monitor) status(name string) (dm.SnapshotStatus, error) {
	lines, _, err := m.cfg.Kernel.Status(name)
	if err != nil {
		return dm.SnapshotStatus{}, err
	}
	if len(lines) != 1 {
		return dm.SnapshotStatus{}, fmt.Errorf("status %s: %d targets, want 1", name, len(lines))
	}
	return dm.ParseSnapshotStatus(lines[0].Params)
}

func observe(s *metrics.Snapshot, st dm.SnapshotStatus, err error) {
	s.State = stateOf(st, err)
	s.Fill = -1
	s.COWBytes, s.UsedBytes = 0, 0
	if err == nil && st.State == dm.SnapshotActive {
		s.COWBytes, s.UsedBytes = st.Total.Bytes(), st.Allocated.Bytes()
	}
	if err == nil {
		if pct := st.Percent(); pct >= 0 {
			s.Fill = pct / 100
		}
	}
}

// Poll scans the kernel once: it observes every snapshot, reports lost
// ones (and removes dmsnap's with RemoveInvalid), auto-extends dmsnap
// snapshots above their threshold, and publishes merge progress (from one
// status reading, unless [Monitor.Run] watches the merge). Errors of
// single snapshots are logged and counted; the error returned is the
// scan's.
func (m *Monitor) Poll(ctx context.Context) error {
	layouts, err := merge.Layouts(m.cfg.Kernel)
	if err != nil {
		m.errorf("scan", "scan device-mapper devices: %v", err)
		return err
	}
	now := m.cfg.Now()
	var merging []metrics.Snapshot
	live := map[string]bool{}
	liveMerges := map[string]bool{}
	for _, l := range layouts {
		_, originName := names(l.Owner, l.Origin.Name)
		for _, sd := range l.Snapshots {
			live[sd.Name] = true
			o := m.seen[sd.Name]
			if o == nil {
				pool, name := names(l.Owner, sd.Name)
				o = &observed{owner: l.Owner, device: sd.Name, snap: metrics.Snapshot{Pool: pool, Name: name, Origin: originName}}
				m.seen[sd.Name] = o
			}
			st, serr := m.status(sd.Name)
			if serr != nil && !errors.Is(serr, dm.ErrNotFound) {
				m.errorf("status", "status of %s: %v", sd.Name, serr)
			}
			observe(&o.snap, st, serr)
			if serr == nil {
				m.handle(ctx, o, st, now)
			}
		}
		if l.Merge != nil {
			pool, _ := names(l.Owner, l.Origin.Name)
			key := l.Origin.Name
			liveMerges[key] = true
			if l.Merge.Snapshot != nil {
				_, sn := names(l.Owner, l.Merge.Snapshot.Name)
				merging = append(merging, metrics.Snapshot{Pool: pool, Name: sn, Origin: originName, State: "merging", Fill: -1})
			}
			m.publishMerge(ctx, key, pool, originName)
		}
	}
	for dev, o := range m.seen {
		if !live[dev] {
			delete(m.seen, dev)
			if m.cfg.Metrics != nil {
				m.cfg.Metrics.Forget(o.snap.Pool, o.snap.Name)
			}
		}
	}
	for key, w := range m.merges {
		if liveMerges[key] {
			continue
		}
		select {
		case <-w.done:
		default:
			continue // the watcher reports the end itself
		}
		delete(m.merges, key)
		if m.cfg.Metrics != nil {
			m.cfg.Metrics.ForgetMerge(w.pool, w.origin)
		}
	}
	m.merging = merging
	m.publish(now)
	return nil
}

// publish makes the observations of the watched snapshots and the merging
// entries of the last Poll what [Monitor.Snapshots] returns.
func (m *Monitor) publish(now time.Time) {
	out := append([]metrics.Snapshot(nil), m.merging...)
	for _, o := range m.seen {
		if o.device != "" {
			out = append(out, o.snap)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Pool != out[j].Pool {
			return out[i].Pool < out[j].Pool
		}
		return out[i].Name < out[j].Name
	})
	m.mu.Lock()
	m.snaps = out
	m.mu.Unlock()
	if m.cfg.Metrics != nil {
		m.cfg.Metrics.Polled(now)
	}
}

// react handles a device-mapper event: it re-reads the status of every
// watched snapshot (one DM_TABLE_STATUS each, no scan) and acts on it
// like Poll. A snapshot gone or renamed sends it to a full Poll, which
// rescans the layouts.
func (m *Monitor) react(ctx context.Context) error {
	now := m.cfg.Now()
	rescan := false
	devs := make([]string, 0, len(m.seen))
	for dev := range m.seen {
		devs = append(devs, dev)
	}
	sort.Strings(devs)
	for _, dev := range devs {
		o := m.seen[dev]
		if o.device == "" {
			continue
		}
		st, err := m.status(dev)
		if errors.Is(err, dm.ErrNotFound) {
			rescan = true
			continue
		}
		if err != nil {
			m.errorf("status", "status of %s: %v", dev, err)
		}
		observe(&o.snap, st, err)
		if err == nil {
			m.handle(ctx, o, st, now)
		}
	}
	if rescan {
		return m.Poll(ctx)
	}
	m.publish(now)
	return nil
}

// handle applies the loss reporting and the auto-extend policy to one
// snapshot whose status was read.
func (m *Monitor) handle(ctx context.Context, o *observed, st dm.SnapshotStatus, now time.Time) {
	s := &o.snap
	if st.State == dm.SnapshotInvalid || st.State == dm.SnapshotOverflow {
		s.NoRoom = false
		if o.lost {
			return
		}
		o.lost = true
		if m.cfg.Metrics != nil {
			m.cfg.Metrics.Invalidated(s.Pool)
		}
		what := "invalid: its COW filled up and its data is lost"
		if st.State == dm.SnapshotOverflow {
			what = "overflowed: writes to it filled its COW"
		}
		if o.owner != merge.OwnerDMSnap {
			m.cfg.Logf("ALERT: snapshot %s (%s) is %s; the origin keeps paying copy-out costs until it is removed", o.device, o.owner, what)
			return
		}
		if !m.cfg.RemoveInvalid || m.cfg.Actions == nil {
			m.cfg.Logf("ALERT: snapshot %s/%s is %s; remove it (dmsnap remove %s/%s) so the origin stops paying copy-out costs",
				s.Pool, s.Name, what, s.Pool, s.Name)
			return
		}
		m.cfg.Logf("ALERT: snapshot %s/%s is %s; removing it (--remove-invalid)", s.Pool, s.Name, what)
		if err := m.cfg.Actions.Remove(ctx, s.Pool, s.Name); err != nil {
			m.errorf("remove", "remove %s/%s: %v", s.Pool, s.Name, err)
			return
		}
		if m.cfg.Metrics != nil {
			m.cfg.Metrics.Removed(s.Pool)
		}
		m.cfg.Logf("removed snapshot %s/%s", s.Pool, s.Name)
		o.device = ""
		return
	}
	if o.owner != merge.OwnerDMSnap || m.cfg.Actions == nil {
		return
	}
	p := m.cfg.Policy(s.Pool)
	if !p.Crossed(st) {
		if s.NoRoom {
			m.cfg.Logf("snapshot %s/%s is back below its auto-extend threshold (%d%%)", s.Pool, s.Name, p.Threshold)
		}
		s.NoRoom = false
		return
	}
	step, err := m.cfg.Actions.Autoextend(ctx, s.Pool, s.Name, p)
	if err != nil {
		if m.cfg.Metrics != nil {
			m.cfg.Metrics.AutoextendStep(s.Pool, s.Name, metrics.Failed, 0)
		}
		m.errorf("autoextend", "auto-extend %s/%s at %.1f%% (threshold %d%%): %v; retrying at the next poll",
			s.Pool, s.Name, st.Percent(), p.Threshold, err)
		return
	}
	if step.Plan.Grow > 0 {
		if m.cfg.Metrics != nil {
			m.cfg.Metrics.AutoextendStep(s.Pool, s.Name, metrics.Extended, step.ToBytes-step.FromBytes)
		}
		m.cfg.Logf("auto-extended snapshot %s/%s at %.1f%% (threshold %d%%, +%d%% steps): COW %d -> %d bytes (%d extents)",
			s.Pool, s.Name, st.Percent(), p.Threshold, p.Percent, step.FromBytes, step.ToBytes, step.Plan.Grow)
		if nst, err := m.status(o.device); err == nil {
			observe(s, nst, nil)
		}
	}
	if !step.Plan.NoRoom {
		s.NoRoom = false
		return
	}
	if m.cfg.Metrics != nil {
		m.cfg.Metrics.AutoextendStep(s.Pool, s.Name, metrics.NoRoom, 0)
	}
	first := !s.NoRoom
	s.NoRoom = true
	if first || now.Sub(o.noRoomLast) >= noRoomRepeat {
		o.noRoomLast = now
		m.cfg.Logf("ALERT: snapshot %s/%s is %.1f%% full (threshold %d%%) and pool %s has no room to grow it "+
			"(%d extents needed, %d free): it becomes INVALID and its data is lost when full. "+
			"Add space (dmsnap pool extend %s DEVICE|FILE), free space (dmsnap remove POOL/OTHER), or remove this snapshot",
			s.Pool, s.Name, st.Percent(), p.Threshold, s.Pool, step.Plan.Need, step.Plan.Grow, s.Pool)
	}
}

// publishMerge reports the merge of origin device key: through a
// merge.Watch goroutine under Run, else from one status reading.
func (m *Monitor) publishMerge(ctx context.Context, key, pool, origin string) {
	if m.cfg.Metrics == nil {
		return
	}
	if m.running != nil {
		if _, ok := m.merges[key]; ok {
			return
		}
		w := &mergeWatch{pool: pool, origin: origin, done: make(chan struct{})}
		m.merges[key] = w
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			defer close(w.done)
			_, err := merge.Watch(m.running, m.cfg.Kernel, key, m.cfg.Interval, m.cfg.Metrics.MergeProgress(pool, origin))
			if err != nil && m.running.Err() == nil {
				m.errorf("merge-watch", "watch the merge into %s: %v", key, err)
			}
		}()
		return
	}
	lines, _, err := m.cfg.Kernel.Status(key)
	if err != nil || len(lines) != 1 {
		return
	}
	st, err := dm.ParseSnapshotStatus(lines[0].Params)
	if err != nil {
		return
	}
	r := merge.Report{Origin: key, State: st.State, ETA: -1, Done: st.MergeDone()}
	if st.State == dm.SnapshotActive {
		r.RemainingSectors = st.Used()
		r.TotalSectors = r.RemainingSectors
	}
	m.merges[key] = &mergeWatch{pool: pool, origin: origin, done: closed}
	m.cfg.Metrics.MergeProgress(pool, origin).Update(r)
}

var closed = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// Run polls every Interval, and re-reads the watched snapshots at once
// when [Config.Events] signals, until ctx is cancelled; it then stops its
// goroutines and returns nil. A failing poll is logged, counted and
// retried.
func (m *Monitor) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	m.running = ctx
	defer func() {
		cancel()
		m.wg.Wait()
		m.running = nil
	}()
	t := time.NewTicker(m.cfg.Interval)
	defer t.Stop()
	events := m.cfg.Events
	err := m.Poll(ctx)
	for {
		if m.cfg.AfterPoll != nil {
			m.cfg.AfterPoll(err)
		}
	wait:
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			err = m.Poll(ctx)
		case _, ok := <-events:
			if !ok {
				m.errorf("wait", "device-mapper events stopped; polling every %s only", m.cfg.Interval)
				events = nil
				goto wait
			}
			err = m.react(ctx)
		}
	}
}
