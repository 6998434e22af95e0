package metrics

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dmsnap/dmsnap/dm"
	"github.com/dmsnap/dmsnap/merge"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func testMetrics(t *testing.T) (*Metrics, *prometheus.Registry) {
	t.Helper()
	snaps := []Snapshot{
		{Pool: "p", Name: "s1", Origin: "base", State: "active", COWBytes: 4 << 20, UsedBytes: 3 << 20, Fill: 0.75},
		{Pool: "p", Name: "s2", Origin: "base", State: "invalid", Fill: -1, NoRoom: false},
		{Pool: "vg", Name: "lvs", Origin: "lv", State: "active", COWBytes: 8 << 20, UsedBytes: 8 << 20, Fill: 1, NoRoom: true},
	}
	m := New(SourceFunc(func() []Snapshot { return snaps }))
	reg := prometheus.NewRegistry()
	if err := m.Register(reg); err != nil {
		t.Fatal(err)
	}
	m.AutoextendStep("p", "s1", Extended, 2<<20)
	m.AutoextendStep("p", "s1", NoRoom, 0)
	m.Invalidated("p")
	m.Error("status")
	m.Polled(time.Unix(1700000000, 0))
	m.RecordTransfer(Ingest, "p", "base", time.Unix(1700000100, 0), 12345)
	p := m.MergeProgress("p", "base")
	p.Update(merge.Report{Origin: "p-base", State: dm.SnapshotActive, TotalSectors: 1000, RemainingSectors: 250, Rate: 1e6, ETA: 3 * time.Second})
	return m, reg
}

// parse decodes the text exposition with the client library's parser.
func parse(t *testing.T, text string) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("exposition does not parse: %v\n%s", err, text)
	}
	return mfs
}

func value(t *testing.T, mfs map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	t.Helper()
	mf := mfs[name]
	if mf == nil {
		t.Fatalf("no %s", name)
	}
next:
	for _, m := range mf.Metric {
		for k, v := range labels {
			found := false
			for _, lp := range m.Label {
				if lp.GetName() == k && lp.GetValue() == v {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Counter != nil:
			return m.Counter.GetValue()
		}
	}
	t.Fatalf("no %s%v", name, labels)
	return 0
}

func TestExposition(t *testing.T) {
	_, reg := testMetrics(t)
	var buf bytes.Buffer
	mfs0, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs0 {
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	mfs := parse(t, buf.String())
	s1 := map[string]string{"pool": "p", "snapshot": "s1", "origin": "base"}
	for name, want := range map[string]float64{
		"dmsnap_snapshot_cow_size_bytes":     4 << 20,
		"dmsnap_snapshot_cow_used_bytes":     3 << 20,
		"dmsnap_snapshot_fill_ratio":         0.75,
		"dmsnap_snapshot_autoextend_no_room": 0,
	} {
		if got := value(t, mfs, name, s1); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if got := value(t, mfs, "dmsnap_snapshot_state", map[string]string{"snapshot": "s2", "state": "invalid"}); got != 1 {
		t.Errorf("s2 invalid = %v", got)
	}
	if got := value(t, mfs, "dmsnap_snapshot_state", map[string]string{"snapshot": "s2", "state": "active"}); got != 0 {
		t.Errorf("s2 active = %v", got)
	}
	if got := value(t, mfs, "dmsnap_snapshot_autoextend_no_room", map[string]string{"snapshot": "lvs"}); got != 1 {
		t.Errorf("lvs no_room = %v", got)
	}
	// Unknown fill is absent, not a fake 0.
	for _, m := range mfs["dmsnap_snapshot_fill_ratio"].Metric {
		for _, lp := range m.Label {
			if lp.GetValue() == "s2" {
				t.Error("fill_ratio of an invalid snapshot exported")
			}
		}
	}
	for name, want := range map[string]float64{
		"dmsnap_merge_progress_ratio":        0.75,
		"dmsnap_merge_remaining_bytes":       250 * 512,
		"dmsnap_merge_eta_seconds":           3,
		"dmsnap_merge_rate_bytes_per_second": 1e6,
	} {
		if got := value(t, mfs, name, map[string]string{"pool": "p", "origin": "base"}); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"dmsnap_autoextend_total", map[string]string{"snapshot": "s1", "outcome": "extended"}, 1},
		{"dmsnap_autoextend_total", map[string]string{"snapshot": "s1", "outcome": "no_room"}, 1},
		{"dmsnap_autoextend_bytes_total", map[string]string{"snapshot": "s1"}, 2 << 20},
		{"dmsnap_snapshot_invalidated_total", map[string]string{"pool": "p"}, 1},
		{"dmsnap_errors_total", map[string]string{"op": "status"}, 1},
		{"dmsnap_monitor_last_poll_timestamp_seconds", nil, 1700000000},
		{"dmsnap_last_transfer_timestamp_seconds", map[string]string{"op": "ingest"}, 1700000100},
		{"dmsnap_last_transfer_bytes", map[string]string{"op": "ingest"}, 12345},
	} {
		if got := value(t, mfs, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
}

func TestForget(t *testing.T) {
	m, reg := testMetrics(t)
	m.Forget("p", "s1")
	m.ForgetMerge("p", "base")
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		switch mf.GetName() {
		case "dmsnap_autoextend_total", "dmsnap_autoextend_bytes_total", "dmsnap_merge_progress_ratio":
			t.Errorf("%s still has %d series", mf.GetName(), len(mf.Metric))
		}
	}
	if len(m.Merges()) != 0 {
		t.Errorf("merges %v", m.Merges())
	}
}

func TestRegisterTwice(t *testing.T) {
	m, reg := testMetrics(t)
	if err := m.Register(reg); err == nil {
		t.Error("registering twice succeeded")
	}
}

func TestWriteTextfile(t *testing.T) {
	_, reg := testMetrics(t)
	dir := t.TempDir()
	if err := CheckTextfileDir(dir); err != nil {
		t.Fatal(err)
	}
	if err := WriteTextfile(dir, reg); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, TextfileName)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	mfs := parse(t, string(b))
	if got := value(t, mfs, "dmsnap_snapshot_fill_ratio", map[string]string{"snapshot": "s1"}); got != 0.75 {
		t.Errorf("fill %v", got)
	}
	// Atomicity: while a writer rewrites the file many times, every read
	// sees a complete exposition, and no temporary file is left.
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 200; i++ {
			if err := WriteTextfile(dir, reg); err != nil {
				t.Error(err)
				break
			}
		}
		close(stop)
	}()
	reads := 0
	for done := false; !done; {
		select {
		case <-stop:
			done = true
		default:
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("read during rewrite: %v", err)
		}
		parse(t, string(b))
		if !strings.Contains(string(b), "dmsnap_monitor_last_poll_timestamp_seconds") {
			t.Fatalf("truncated textfile (%d bytes)", len(b))
		}
		reads++
	}
	wg.Wait()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 || ents[0].Name() != TextfileName {
		t.Errorf("directory holds %v", ents)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %v", fi.Mode())
	}
	t.Logf("%d reads during 200 rewrites", reads)
}

func TestCheckTextfileDir(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := CheckTextfileDir(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing dir: %v", err)
	}
	if err := CheckTextfileDir(file); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("file: %v", err)
	}
	if os.Geteuid() != 0 {
		ro := filepath.Join(dir, "ro")
		if err := os.Mkdir(ro, 0o555); err != nil {
			t.Fatal(err)
		}
		if err := CheckTextfileDir(ro); err == nil || !strings.Contains(err.Error(), "not writable") {
			t.Errorf("read-only dir: %v", err)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("check left files: %v", ents)
	}
}
