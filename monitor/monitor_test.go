package monitor

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dmsnap/dmsnap/dm"
	"github.com/dmsnap/dmsnap/lvm"
	"github.com/dmsnap/dmsnap/merge"
	"github.com/dmsnap/dmsnap/metrics"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// fakeDev is one device of fakeKernel.
type fakeDev struct {
	uuid   string
	dev    dm.DevNum
	table  string // one line
	status string
}

// fakeKernel serves List, Table, Status and Info from a map; the mutating
// calls fail, since the monitor must never change a device itself.
type fakeKernel struct {
	mu    sync.Mutex
	devs  map[string]*fakeDev
	calls int
}

func (k *fakeKernel) List() ([]dm.ListEntry, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.calls++
	var out []dm.ListEntry
	for n, d := range k.devs {
		out = append(out, dm.ListEntry{Name: n, Dev: d.dev, UUID: d.uuid})
	}
	return out, nil
}

func (k *fakeKernel) get(name string) (*fakeDev, dm.Info, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.calls++
	d := k.devs[name]
	if d == nil {
		return nil, dm.Info{}, fmt.Errorf("%s: %w", name, dm.ErrNotFound)
	}
	return d, dm.Info{Name: name, UUID: d.uuid, Dev: d.dev}, nil
}

func line(s string) []dm.TargetLine {
	var start, length dm.Sector
	var typ string
	n, _ := fmt.Sscanf(s, "%d %d %s", &start, &length, &typ)
	if n != 3 {
		panic(s)
	}
	params := strings.SplitN(s, " ", 4)[3]
	return []dm.TargetLine{{Start: start, Length: length, Type: typ, Params: params}}
}

func (k *fakeKernel) Info(name string) (dm.Info, error) { _, i, err := k.get(name); return i, err }
func (k *fakeKernel) Table(name string, _ dm.TableOptions) ([]dm.TargetLine, dm.Info, error) {
	d, i, err := k.get(name)
	if err != nil {
		return nil, i, err
	}
	return line(d.table), i, nil
}
func (k *fakeKernel) Status(name string) ([]dm.TargetLine, dm.Info, error) {
	d, i, err := k.get(name)
	if err != nil {
		return nil, i, err
	}
	l := line(d.table)
	l[0].Params = d.status
	return l, i, nil
}
func (k *fakeKernel) setStatus(name, s string) {
	k.mu.Lock()
	k.devs[name].status = s
	k.mu.Unlock()
}

var errReadOnly = fmt.Errorf("fake kernel: the monitor must not change devices")

func (k *fakeKernel) Load(string, []dm.TargetLine, dm.LoadOptions) error { return errReadOnly }
func (k *fakeKernel) ClearInactive(string) error                         { return errReadOnly }
func (k *fakeKernel) Suspend(string, dm.SuspendOptions) error            { return errReadOnly }
func (k *fakeKernel) Resume(string) (dm.Info, error)                     { return dm.Info{}, errReadOnly }
func (k *fakeKernel) Remove(string, dm.RemoveOptions) error              { return errReadOnly }
func (k *fakeKernel) WithSuspended(context.Context, string, dm.SuspendOptions, func() error) error {
	return errReadOnly
}

var _ merge.Client = (*fakeKernel)(nil)

// addLayout adds origin <pool>-<base> with n snapshots <pool>-s<i>, owned
// by prefix ("DMSNAP-", "LVM-" or ""), minor numbers from minor.
func (k *fakeKernel) addLayout(prefix, pool, base string, n int, minor uint32) {
	if k.devs == nil {
		k.devs = map[string]*fakeDev{}
	}
	real := dm.DevNum{Major: 253, Minor: minor}
	uuid := func(s string) string {
		if prefix == "" {
			return ""
		}
		return prefix + pool + s
	}
	k.devs[pool+"-"+base+"-real"] = &fakeDev{uuid: uuid(base + "-real"), dev: real, table: "0 8192 linear 7:0 0"}
	k.devs[pool+"-"+base] = &fakeDev{uuid: uuid(base), dev: dm.DevNum{Major: 253, Minor: minor + 1}, table: "0 8192 snapshot-origin " + real.String()}
	for i := range n {
		cow := dm.DevNum{Major: 253, Minor: minor + 2 + 2*uint32(i)}
		name := fmt.Sprintf("%s-s%d", pool, i)
		k.devs[name+"-cow"] = &fakeDev{uuid: uuid(name + "-cow"), dev: cow, table: "0 8192 linear 7:0 8192"}
		k.devs[name] = &fakeDev{uuid: uuid(name), dev: dm.DevNum{Major: 253, Minor: cow.Minor + 1},
			table: "0 8192 snapshot " + real.String() + " " + cow.String() + " P 8", status: "16/8192 16"}
	}
}

// fakeActions records the calls and grows the fake kernel's COW.
type fakeActions struct {
	k       *fakeKernel
	free    uint64 // extents of 4096 sectors
	extends []string
	removes []string
}

func (a *fakeActions) Autoextend(_ context.Context, pool, name string, p Policy) (Step, error) {
	a.extends = append(a.extends, pool+"/"+name)
	dev := pool + "-" + name
	lines, _, err := a.k.Status(dev)
	if err != nil {
		return Step{}, err
	}
	st, err := dm.ParseSnapshotStatus(lines[0].Params)
	if err != nil {
		return Step{}, err
	}
	cow := uint64(st.Total) / 4096
	pl := PlanGrowth(p, st, lvm.ExtentCount(cow), 4096, lvm.ExtentCount(a.free))
	a.free -= uint64(pl.Grow)
	to := st.Total + dm.Sector(uint64(pl.Grow)*4096)
	a.k.setStatus(dev, fmt.Sprintf("%d/%d %d", st.Allocated, to, st.Metadata))
	return Step{Plan: pl, FromBytes: st.Total.Bytes(), ToBytes: to.Bytes()}, nil
}

func (a *fakeActions) Remove(_ context.Context, pool, name string) error {
	a.removes = append(a.removes, pool+"/"+name)
	a.k.mu.Lock()
	delete(a.k.devs, pool+"-"+name)
	a.k.mu.Unlock()
	return nil
}

type logBuf struct {
	mu    sync.Mutex
	lines []string
}

func (l *logBuf) logf(format string, args ...any) {
	l.mu.Lock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
	l.mu.Unlock()
}

func (l *logBuf) has(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, x := range l.lines {
		if strings.Contains(x, s) {
			return true
		}
	}
	return false
}

func newTestMonitor(t *testing.T, k *fakeKernel, a *fakeActions, removeInvalid bool) (*Monitor, *metrics.Metrics, *logBuf) {
	t.Helper()
	lb := &logBuf{}
	var mon *Monitor
	m := metrics.New(metrics.SourceFunc(func() []metrics.Snapshot { return mon.Snapshots() }))
	if err := m.Register(prometheus.NewRegistry()); err != nil {
		t.Fatal(err)
	}
	clock := time.Unix(1700000000, 0)
	mon = New(Config{
		Kernel: k, Actions: a, RemoveInvalid: removeInvalid, Metrics: m, Logf: lb.logf,
		Policy: func(pool string) Policy {
			if pool == "p" {
				return Policy{Threshold: 60, Percent: 50}
			}
			return DefaultPolicy
		},
		Now: func() time.Time { clock = clock.Add(time.Second); return clock },
	})
	return mon, m, lb
}

func snapshotByName(t *testing.T, mon *Monitor, name string) metrics.Snapshot {
	t.Helper()
	for _, s := range mon.Snapshots() {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no snapshot %s in %+v", name, mon.Snapshots())
	return metrics.Snapshot{}
}

func TestPollAutoextend(t *testing.T) {
	k := &fakeKernel{}
	k.addLayout("DMSNAP-", "p", "base", 2, 0)
	k.addLayout("LVM-", "vg", "lv", 1, 100)
	a := &fakeActions{k: k, free: 10}
	mon, m, lb := newTestMonitor(t, k, a, false)
	ctx := context.Background()
	if err := mon.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	if len(a.extends) != 0 || len(mon.Snapshots()) != 3 {
		t.Fatalf("extends %v, snapshots %+v", a.extends, mon.Snapshots())
	}
	s := snapshotByName(t, mon, "s0")
	if s.Pool != "p" || s.Origin != "base" || s.State != "active" || s.COWBytes != 8192*512 || s.UsedBytes != 16*512 {
		t.Errorf("s0: %+v", s)
	}
	// 75% of 2 extents: one extension by 50% (1 extent), log, metric.
	k.setStatus("p-s0", "6144/8192 16")
	k.setStatus("vg-s0", "8000/8192 16") // LVM2's: read-only, never extended
	if err := mon.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	if strings.Join(a.extends, ",") != "p/s0" {
		t.Fatalf("extends %v", a.extends)
	}
	if s := snapshotByName(t, mon, "s0"); s.COWBytes != 12288*512 || s.NoRoom {
		t.Errorf("after extend: %+v", s)
	}
	if !lb.has("auto-extended snapshot p/s0 at 75.0%") {
		t.Errorf("log: %q", lb.lines)
	}
	if got := counterValue(t, m.AutoextendCounter("p", "s0", metrics.Extended)); got != 1 {
		t.Errorf("autoextend_total{extended} = %v", got)
	}
	// Full again with 1 free extent where 3 are needed: the extent is
	// used, and the alert is raised.
	a.free = 1
	k.setStatus("p-s0", "12000/12288 16")
	if err := mon.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	s = snapshotByName(t, mon, "s0")
	if !s.NoRoom || !lb.has("ALERT: snapshot p/s0") || !lb.has("dmsnap pool extend p") {
		t.Errorf("no alert: %+v %q", s, lb.lines)
	}
	// Back below the threshold (another process extended it): cleared.
	k.setStatus("p-s0", "100/40000 16")
	if err := mon.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	if s := snapshotByName(t, mon, "s0"); s.NoRoom {
		t.Errorf("no-room not cleared: %+v", s)
	}
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var d dto.Metric
	if err := c.Write(&d); err != nil {
		t.Fatal(err)
	}
	return d.GetCounter().GetValue()
}

func TestPollInvalid(t *testing.T) {
	for _, remove := range []bool{false, true} {
		t.Run(fmt.Sprint("remove=", remove), func(t *testing.T) {
			k := &fakeKernel{}
			k.addLayout("DMSNAP-", "p", "base", 1, 0)
			k.addLayout("LVM-", "vg", "lv", 1, 100)
			a := &fakeActions{k: k}
			mon, _, lb := newTestMonitor(t, k, a, remove)
			k.setStatus("p-s0", "Invalid")
			k.setStatus("vg-s0", "Invalid")
			for range 2 {
				if err := mon.Poll(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			if !lb.has("ALERT: snapshot p/s0 is invalid") || !lb.has("ALERT: snapshot vg-s0 (lvm2) is invalid") {
				t.Errorf("log: %q", lb.lines)
			}
			want := ""
			if remove {
				want = "p/s0"
			}
			if got := strings.Join(a.removes, ","); got != want {
				t.Errorf("removes %q, want %q (LVM2's never)", got, want)
			}
			if !remove {
				if s := snapshotByName(t, mon, "s0"); s.State != "invalid" || s.Fill >= 0 {
					t.Errorf("%+v", s)
				}
			}
		})
	}
}

// TestRunWakesOnEvent: an event re-reads the watched snapshots at once,
// with one status call each and no scan; a snapshot gone on an event
// sends the monitor to a full scan; a closed event channel is logged and
// polling goes on.
func TestRunWakesOnEvent(t *testing.T) {
	k := &fakeKernel{}
	k.addLayout("DMSNAP-", "p", "base", 3, 0)
	ev := make(chan struct{})
	polls := make(chan struct{}, 10)
	var logs syncLog
	mon := New(Config{Kernel: k, Events: ev, Interval: time.Hour, Logf: logs.logf,
		AfterPoll: func(error) { polls <- struct{}{} }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- mon.Run(ctx) }()
	<-polls
	k.setStatus("p-s0", "Invalid")
	k.mu.Lock()
	k.calls = 0
	k.mu.Unlock()
	ev <- struct{}{}
	select {
	case <-polls:
	case <-time.After(5 * time.Second):
		t.Fatal("no re-read after a device event")
	}
	if s := snapshotByName(t, mon, "s0"); s.State != "invalid" {
		t.Errorf("%+v", s)
	}
	k.mu.Lock()
	calls := k.calls
	delete(k.devs, "p-s1")
	k.calls = 0
	k.mu.Unlock()
	if calls != 3 {
		t.Errorf("%d kernel calls for an event with 3 snapshots, want 3 status reads", calls)
	}

	ev <- struct{}{}
	<-polls
	if n := len(mon.Snapshots()); n != 2 {
		t.Errorf("%d snapshots after s1 went away, want 2", n)
	}
	k.mu.Lock()
	calls = k.calls
	k.mu.Unlock()
	if calls <= 3 {
		t.Errorf("%d kernel calls: no rescan after a snapshot went away", calls)
	}

	close(ev)
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "events stopped") && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), "events stopped") {
		t.Errorf("log: %q", logs.String())
	}
	select {
	case <-polls:
		t.Error("a poll after the event channel closed")
	case <-time.After(20 * time.Millisecond):
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

type syncLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *syncLog) logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(&l.b, format+"\n", args...)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// BenchmarkPoll100: one poll of 100 dmsnap snapshots over a fake kernel;
// the monitor's own CPU per poll, kernel ioctls excluded.
func BenchmarkPoll100(b *testing.B) {
	k := &fakeKernel{}
	for i := range 10 {
		k.addLayout("DMSNAP-", fmt.Sprintf("p%d", i), "base", 10, uint32(i*100))
	}
	m := metrics.New(nil)
	mon := New(Config{Kernel: k, Metrics: m})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := mon.Poll(ctx); err != nil {
			b.Fatal(err)
		}
	}
	if n := len(mon.Snapshots()); n != 100 {
		b.Fatalf("%d snapshots", n)
	}
	b.ReportMetric(float64(k.calls)/float64(b.N), "ioctls/op")
}
