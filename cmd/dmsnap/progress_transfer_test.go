package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestTransferProgress: off a terminal the last JSON line carries the
// byte count and done; --quiet prints nothing; a bar finishes (mpb's Wait
// returns) whether the transfer ended below, at or above its estimate.
func TestTransferProgress(t *testing.T) {
	var errb bytes.Buffer
	line := jsonTransferProgress{MessageType: "ingest_progress", Dataset: "tank/vol", EstimatedBytes: 1000}
	p := newTransferProgress(&globalOptions{stderr: &errb}, false, "tank/vol", line)
	p.Set(100)
	if _, err := p.Write(make([]byte, 300)); err != nil {
		t.Fatal(err)
	}
	if r := p.report(false); r.Bytes != 400 || r.Percent != 40 || r.Done || r.Rate <= 0 || r.ETASeconds < 0 {
		t.Errorf("report mid-way: %+v", r)
	}
	p.finish(true)
	lines := strings.Split(strings.TrimSpace(errb.String()), "\n")
	var last jsonTransferProgress
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil {
		t.Fatalf("%q: %v", errb.String(), err)
	}
	if !last.Done || last.Bytes != 400 || last.Percent != 100 || last.MessageType != "ingest_progress" || last.Dataset != "tank/vol" || last.Step != 0 {
		t.Errorf("last line %+v", last)
	}
	if strings.Contains(lines[len(lines)-1], `"step"`) {
		t.Errorf("ingest line carries replicate's step fields: %s", lines[len(lines)-1])
	}

	p = newTransferProgress(&globalOptions{stderr: &errb}, false, "x", line)
	p.Set(5000) // above the estimate
	if r := p.report(false); r.Percent != 100 || r.ETASeconds != 0 {
		t.Errorf("past the estimate: %+v, want 100%% and ETA 0", r)
	}
	p.finish(false)

	errb.Reset()
	p = newTransferProgress(&globalOptions{stderr: &errb, Quiet: true}, false, "x", line)
	p.Set(10)
	p.finish(true)
	if errb.Len() != 0 {
		t.Errorf("--quiet printed %q", errb.String())
	}

	for _, n := range []int64{0, 500, 1000, 2500} {
		var out bytes.Buffer
		p := newTransferProgress(&globalOptions{stderr: &out}, true, "bar", line)
		p.Set(n)
		done := make(chan struct{})
		go func() { p.finish(true); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("bar at %d of ~1000 bytes: finish did not return", n)
		}
	}
}
