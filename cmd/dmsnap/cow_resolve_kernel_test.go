package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/dmsnap/dmsnap/dm"
)

// TestCowSnapshotNameKernel reads a pool snapshot's store by name.
// Scenario:
//  1. pool on an image file, 16 MiB origin "base", persistent snapshot
//     "snap" with chunk 8 (4 KiB);
//  2. write origin chunks 5, 6 and 100 (three 4 KiB writes);
//  3. `diff POOL/snap --json` lists exactly chunks 5-6 and 100, with the
//     chunk size and origin size taken from the pool metadata;
//  4. `cow verify POOL/snap` passes; `cow inspect` of the plain volume
//     "base" is refused, naming it a volume, not a snapshot.
func TestCowSnapshotNameKernel(t *testing.T) {
	e, pool, _, _ := kernelPool(t)
	e.mustRun("lv", "create", pool+"/base", "--size", "16M")
	e.mustRun("create", pool+"/base", "snap", "--cow", "4M", "--persistent")
	base := dm.DevicePath(pool + "-base")
	for _, chunk := range []int64{5, 6, 100} {
		if err := writeAt(t, base, chunk*4096, randBytes(4096)); err != nil {
			t.Fatal(err)
		}
	}

	out := e.mustRun("--json", "diff", pool+"/snap")
	var d struct {
		ChunkSectors uint32 `json:"chunk_sectors"`
		Extents      []struct {
			StartChunk uint64 `json:"start_chunk"`
			Chunks     uint64 `json:"chunks"`
		} `json:"extents"`
	}
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if d.ChunkSectors != 8 || len(d.Extents) != 2 ||
		d.Extents[0].StartChunk != 5 || d.Extents[0].Chunks != 2 ||
		d.Extents[1].StartChunk != 100 || d.Extents[1].Chunks != 1 {
		t.Fatalf("diff of %s/snap: %s", pool, out)
	}
	if out := e.mustRun("cow", "verify", pool+"/snap"); !strings.Contains(out, "ok: 3 exceptions") {
		t.Errorf("cow verify: %s", out)
	}
	code, _, errs := e.run("cow", "inspect", pool+"/base")
	if code != 1 || !strings.Contains(errs, "is a volume, not a snapshot") {
		t.Errorf("cow inspect of a plain volume: exit %d %q", code, errs)
	}
}
