package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dmsnap/dmsnap/dm"
	"github.com/dmsnap/dmsnap/metrics"
	"github.com/dmsnap/dmsnap/monitor"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// syncBuffer is a bytes.Buffer safe for the monitor's logger and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startMonitor runs `dmsnap monitor` in-process until the test ends; it
// returns its log and, with a listener, the metrics URL.
func startMonitor(t *testing.T, e *cliEnv, opts monitorOptions) (*syncBuffer, string) {
	t.Helper()
	log := &syncBuffer{}
	gopts := &globalOptions{ConfigDir: e.path("cfg"), LockDir: e.path("lock"), DevDir: e.path("dev"), stdout: io.Discard, stderr: log}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	opts.ready = func(addr string) { ready <- addr }
	done := make(chan error, 1)
	go func() { done <- runMonitor(ctx, gopts, opts) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("monitor: %v", err)
		}
		if t.Failed() {
			t.Logf("monitor log:\n%s", log)
		}
	})
	url := ""
	if opts.Listen != "" {
		select {
		case addr := <-ready:
			url = "http://" + addr + "/metrics"
		case err := <-done:
			t.Fatalf("monitor: %v", err)
		case <-time.After(10 * time.Second):
			t.Fatal("monitor did not start")
		}
	}
	return log, url
}

// loopbackUp brings up the VM's loopback interface, which the guest's
// /init leaves down, with busybox's ip (or ifconfig).
func loopbackUp(t *testing.T) {
	t.Helper()
	if c, err := net.Dial("tcp", "127.0.0.1:1"); err == nil {
		c.Close()
		return
	} else if !errors.Is(err, syscall.ENETUNREACH) {
		return // refused: lo is up
	}
	for _, args := range [][]string{{"ip", "link", "set", "lo", "up"}, {"ifconfig", "lo", "127.0.0.1", "up"}} {
		for _, bin := range []string{"/bin/busybox", "busybox"} {
			if out, err := exec.Command(bin, args...).CombinedOutput(); err == nil {
				return
			} else {
				t.Logf("%s %v: %v %s", bin, args, err, out)
			}
		}
	}
	t.Fatal("cannot bring up the loopback interface")
}

// kernelSnapStatus reads a snapshot's status from the kernel, without the
// pool lock (which the monitor holds while it extends).
func kernelSnapStatus(t *testing.T, name string) dm.SnapshotStatus {
	t.Helper()
	k, err := dm.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	lines, _, err := k.Status(name)
	if err != nil || len(lines) != 1 {
		t.Fatalf("status %s: %v %v", name, lines, err)
	}
	st, err := dm.ParseSnapshotStatus(lines[0].Params)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// scrape fetches and parses the exposition with the client library's
// parser.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return parseExposition(t, b)
}

func parseExposition(t *testing.T, b []byte) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("exposition does not parse: %v\n%s", err, b)
	}
	return mfs
}

// metricValue returns the value of the series of name whose labels include
// labels, and whether there is one.
func metricValue(mfs map[string]*dto.MetricFamily, name string, labels map[string]string) (float64, bool) {
	mf := mfs[name]
	if mf == nil {
		return 0, false
	}
	for _, m := range mf.Metric {
		n := 0
		for _, lp := range m.Label {
			if v, ok := labels[lp.GetName()]; ok && v == lp.GetValue() {
				n++
			}
		}
		if n != len(labels) {
			continue
		}
		if m.Gauge != nil {
			return m.Gauge.GetValue(), true
		}
		return m.Counter.GetValue(), true
	}
	return 0, false
}

// waitFor polls cond every 50 ms for up to 20 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestMonitorAutoextendKernel:
//  1. a 16 MiB origin with a 4 MiB COW (one extent), chunk 4K, policy 60%/+50%;
//  2. the monitor polls every 100 ms;
//  3. a writer rewrites the origin in 256 KiB bursts at about 5 MiB/s,
//     12 MiB in all (3x the first COW), reading the snapshot's fill after
//     each burst;
//  4. the snapshot never becomes invalid, its COW grew, every step is
//     logged, and the snapshot still reads the old data.
func TestMonitorAutoextendKernel(t *testing.T) {
	e, pool, _, _ := kernelPool(t)
	e.mustRun("lv", "create", pool+"/base", "--size", "16M")
	base := dm.DevicePath(pool + "-base")
	old := fill(t, base, 16<<20)
	e.mustRun("create", pool+"/base", "snap", "--cow", "4M", "--chunksize", "4K")
	log, _ := startMonitor(t, e, monitorOptions{Interval: 100 * time.Millisecond, Policy: monitor.Policy{Threshold: 60, Percent: 50}})

	const burst, total = 256 << 10, 12 << 20
	maxFill := 0.0
	start := time.Now()
	for off := 0; off < total; off += burst {
		if err := writeAt(t, base, int64(off), randBytes(burst)); err != nil {
			t.Fatal(err)
		}
		st := kernelSnapStatus(t, pool+"-snap")
		if st.State != dm.SnapshotActive {
			t.Fatalf("after %d MiB: snapshot %s", (off+burst)>>20, st.State)
		}
		maxFill = max(maxFill, st.Percent())
		time.Sleep(50 * time.Millisecond)
	}
	elapsed := time.Since(start)
	st := kernelSnapStatus(t, pool+"-snap")
	if st.State != dm.SnapshotActive || st.Total.Bytes() <= 4<<20 {
		t.Fatalf("after the writes: %+v", st)
	}
	if n := strings.Count(log.String(), "auto-extended snapshot "+pool+"/snap"); n < 2 {
		t.Errorf("%d auto-extend steps logged", n)
	}
	if got := digest(t, dm.DevicePath(pool+"-snap"), 16<<20); got != old {
		t.Error("the snapshot does not read the old data")
	}
	t.Logf("wrote %d MiB in %s (%.1f MiB/s); COW 4 MiB -> %d MiB; highest fill seen %.1f%%",
		total>>20, elapsed.Round(time.Millisecond), float64(total)/(1<<20)/elapsed.Seconds(), st.Total.Bytes()>>20, maxFill)
}

// TestMonitorNoRoomKernel:
//  1. a snapshot with a 4 MiB COW in a pool with no free extents left;
//  2. the monitor (textfile mode) sees it cross 60%: the no-room metric
//     is 1 and the log says how to add space;
//  3. more writes fill the COW: the snapshot is invalid, the state metric
//     and the invalidation counter say so.
func TestMonitorNoRoomKernel(t *testing.T) {
	e, pool, _, _ := kernelPool(t)
	e.mustRun("lv", "create", pool+"/base", "--size", "16M")
	e.mustRun("create", pool+"/base", "snap", "--cow", "4M", "--chunksize", "4K")
	var show struct {
		FreeBytes uint64 `json:"free_bytes"`
	}
	if err := json.Unmarshal([]byte(e.mustRun("--json", "pool", "show", pool)), &show); err != nil {
		t.Fatal(err)
	}
	e.mustRun("lv", "create", pool+"/filler", "--size", fmt.Sprintf("%dK", show.FreeBytes>>10))
	dir := t.TempDir()
	log, _ := startMonitor(t, e, monitorOptions{Interval: 100 * time.Millisecond, Textfile: dir,
		Policy: monitor.Policy{Threshold: 60, Percent: 20}})
	read := func() map[string]*dto.MetricFamily {
		b, err := os.ReadFile(filepath.Join(dir, metrics.TextfileName))
		if err != nil {
			return nil
		}
		return parseExposition(t, b)
	}
	lbl := map[string]string{"pool": pool, "snapshot": "snap", "origin": "base"}
	base := dm.DevicePath(pool + "-base")
	if err := writeAt(t, base, 0, randBytes(3<<20)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the no-room alert", func() bool {
		v, _ := metricValue(read(), "dmsnap_snapshot_autoextend_no_room", lbl)
		return v == 1
	})
	if l := log.String(); !strings.Contains(l, "ALERT: snapshot "+pool+"/snap") || !strings.Contains(l, "dmsnap pool extend "+pool) {
		t.Errorf("log does not say what to do:\n%s", l)
	}
	if err := writeAt(t, base, 3<<20, randBytes(8<<20)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the invalid state", func() bool {
		mfs := read()
		v, _ := metricValue(mfs, "dmsnap_snapshot_state", map[string]string{"snapshot": "snap", "state": "invalid"})
		n, _ := metricValue(mfs, "dmsnap_snapshot_invalidated_total", map[string]string{"pool": pool})
		return v == 1 && n == 1
	})
	if st := kernelSnapStatus(t, pool+"-snap"); st.State != dm.SnapshotInvalid {
		t.Errorf("snapshot %s", st.State)
	}
	if !strings.Contains(log.String(), "is invalid") {
		t.Errorf("log:\n%s", log)
	}
}

// TestMonitorMergeKernel:
//  1. a snapshot with 24 MiB of exceptions;
//  2. `dmsnap merge --background` starts the merge and returns;
//  3. scraping /metrics every 20 ms sees the remaining bytes move down to
//     0, and every scrape parses as Prometheus exposition.
func TestMonitorMergeKernel(t *testing.T) {
	e, pool, _, _ := kernelPool(t)
	e.mustRun("lv", "create", pool+"/base", "--size", "24M")
	e.mustRun("create", pool+"/base", "snap", "--cow", "32M")
	if err := writeAt(t, dm.DevicePath(pool+"-base"), 0, randBytes(24<<20)); err != nil {
		t.Fatal(err)
	}
	loopbackUp(t)
	_, url := startMonitor(t, e, monitorOptions{Listen: "127.0.0.1:0", Interval: 50 * time.Millisecond, Policy: monitor.DefaultPolicy})
	mfs := scrape(t, url)
	if v, ok := metricValue(mfs, "dmsnap_snapshot_cow_used_bytes", map[string]string{"pool": pool, "snapshot": "snap"}); !ok || v < 24<<20 {
		t.Fatalf("cow used before the merge: %v %v", v, ok)
	}
	e.mustRun("merge", "--background", pool+"/snap")
	lbl := map[string]string{"pool": pool, "origin": "base"}
	seen := map[float64]bool{}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		mfs := scrape(t, url)
		if v, ok := metricValue(mfs, "dmsnap_merge_remaining_bytes", lbl); ok {
			seen[v] = true
			if v == 0 {
				break
			}
		}
		if _, ok := metricValue(mfs, "process_cpu_seconds_total", nil); !ok {
			t.Fatal("no process metrics")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(seen) < 2 || !seen[0] {
		t.Errorf("merge_remaining_bytes values seen: %v (want it to move to 0)", seen)
	}
	e.mustRun("merge", "--watch", pool+"/snap") // finish it
}
