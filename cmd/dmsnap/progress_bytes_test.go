package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// TestByteProgressJSON: off a terminal, progress is JSON lines on stderr,
// rate limited, ending with one done line; --quiet prints nothing.
func TestByteProgressJSON(t *testing.T) {
	var errb bytes.Buffer
	bp := newByteProgress(&globalOptions{stderr: &errb}, "ingest", "pool/vol", 1000)
	bp.every = 0 // every update is a line
	bp.Set(100)
	if _, err := bp.Write(make([]byte, 300)); err != nil {
		t.Fatal(err)
	}
	bp.Finish(true)
	lines := strings.Split(strings.TrimSpace(errb.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines, want 3:\n%s", len(lines), errb.String())
	}
	var got []jsonTransferProgress
	for _, l := range lines {
		var p jsonTransferProgress
		if err := json.Unmarshal([]byte(l), &p); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		got = append(got, p)
	}
	if got[0].DoneBytes != 100 || got[1].DoneBytes != 400 || got[2].DoneBytes != 400 {
		t.Errorf("done bytes %d %d %d, want 100 400 400", got[0].DoneBytes, got[1].DoneBytes, got[2].DoneBytes)
	}
	if got[1].Done || !got[2].Done || got[2].MessageType != "progress" || got[2].Operation != "ingest" || got[2].Subject != "pool/vol" || got[2].TotalBytes != 1000 {
		t.Errorf("last line %+v", got[2])
	}
	if got[1].Rate <= 0 || got[1].ETASeconds < 0 {
		t.Errorf("rate %v eta %v, want a rate and a known ETA", got[1].Rate, got[1].ETASeconds)
	}

	errb.Reset()
	bp = newByteProgress(&globalOptions{stderr: &errb}, "ingest", "pool/vol", 1000)
	for i := range 50 {
		bp.Set(int64(i))
	}
	bp.Finish(false)
	if n := strings.Count(errb.String(), "\n"); n != 2 {
		t.Errorf("rate limited: %d lines for 50 quick updates, want 2 (first, last):\n%s", n, errb.String())
	}

	errb.Reset()
	bp = newByteProgress(&globalOptions{stderr: &errb, Quiet: true}, "ingest", "pool/vol", 1000)
	bp.Set(10)
	bp.Finish(true)
	if errb.Len() != 0 {
		t.Errorf("--quiet printed %q", errb.String())
	}
}
