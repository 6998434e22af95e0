//go:build linux

package main

import (
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/dmsnap/dmsnap/ingest"
	"github.com/dmsnap/dmsnap/zfs"
)

// benchIngestBytes returns the origin size of BenchmarkIngestZFS: 64 MiB
// of random data (no zero blocks, so nothing is skipped as a hole), or
// $DMSNAP_BENCH_INGEST_MB MiB (a multiple of 4). The guest keeps its files
// in RAM: run with vmrun --mem 3072.
func benchIngestBytes(b *testing.B) int64 {
	mb := int64(64)
	if v := os.Getenv("DMSNAP_BENCH_INGEST_MB"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 || n%4 != 0 {
			b.Fatalf("DMSNAP_BENCH_INGEST_MB=%q: want a positive multiple of 4", v)
		}
		mb = n
	}
	return mb << 20
}

// BenchmarkIngestZFS measures, per iteration on the same origin:
//   - full: `dmsnap ingest --full` (snapshot, copy, sync, zfs snapshot);
//   - dd: `dd bs=1M conv=fsync` of the same frozen snapshot into a second
//     zvol of the same volblocksize (the floor a copy tool can reach);
//   - incr: 1% of the origin's 16 KiB chunks rewritten, then an
//     incremental ingest.
//
// It reports full-MB/s, dd-MB/s and incr-%-of-full (goal: <= 3), and
// splits the incremental's time into its copy phase (as a % of the full
// copy phase) and the fixed rest (snapshot, zfs commands, commit).
// Run in the ZFS tier (docs/perf.md has the command).
func BenchmarkIngestZFS(b *testing.B) {
	benchIngestBytes := benchIngestBytes(b)
	f := newSizedIngestFixture(b, benchIngestBytes)
	var prev string // the previous ingest's ZFS snapshot, destroyed to bound the pool's use
	run := func(args ...string) (jsonIngest, time.Duration) {
		b.Helper()
		start := time.Now()
		out, _ := f.e.runOK(append([]string{"--json", "--quiet", "ingest", f.pool + "/base", f.ds, "--cow", "32M"}, args...)...)
		d := time.Since(start)
		var j jsonIngest
		if err := json.Unmarshal([]byte(out), &j); err != nil {
			b.Fatalf("ingest output %q: %v", out, err)
		}
		if prev != "" {
			if out, err := exec.Command("zfs", "destroy", prev).CombinedOutput(); err != nil {
				b.Fatalf("zfs destroy %s: %v: %s", prev, err, out)
			}
		}
		prev = j.Snapshot
		return j, d
	}
	first, _ := run()
	blk := first.ChunkBytes
	if blk == 0 {
		blk = 16 << 10
	}
	ddVol := f.zpool + "/dd"
	if out, err := exec.Command("zfs", "create", "-s", "-b", "16K", "-V", fmt.Sprint(benchIngestBytes), ddVol).CombinedOutput(); err != nil {
		b.Fatalf("zfs create: %v: %s", err, out)
	}
	ddDev, err := (&zfs.Runner{}).ZvolDevice(b.Context(), ddVol, 30*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	seq := uint64(1)
	var full, dd, incr time.Duration
	var fullCopy, incrCopy float64 // the copy phases, seconds
	var incrChunks uint64
	b.ResetTimer()
	for range b.N {
		j, d := run("--full")
		seq++
		if !j.Full {
			b.Fatalf("--full ingest was not full: %+v", j)
		}
		full += d
		fullCopy += j.Phases.Copy

		snap := f.snapDev(ingest.CursorName("base", seq))
		start := time.Now()
		if out, err := exec.Command("dd", "if="+snap, "of="+ddDev, "bs=1M", "conv=fsync", "status=none").CombinedOutput(); err != nil {
			b.Fatalf("dd: %v: %s", err, out)
		}
		dd += time.Since(start)

		chunks := benchIngestBytes / blk
		for range chunks / 100 {
			off := mrand.Int64N(chunks) * blk
			if err := writeAt(b, f.origin, off, randBytes(4096)); err != nil {
				b.Fatal(err)
			}
		}
		j, d = run()
		seq++
		if j.Full {
			b.Fatalf("incremental ingest was full: %s", j.FullReason)
		}
		incr += d
		incrCopy += j.Phases.Copy
		incrChunks += j.ChangedChunks
	}
	n := float64(b.N)
	b.ReportMetric(float64(benchIngestBytes)/1e6/(full.Seconds()/n), "full-MB/s")
	b.ReportMetric(float64(benchIngestBytes)/1e6/(dd.Seconds()/n), "dd-MB/s")
	b.ReportMetric(100*incr.Seconds()/full.Seconds(), "incr-%-of-full")
	b.ReportMetric(float64(incrChunks)/n, "incr-chunks")
	b.ReportMetric(100*incrCopy/fullCopy, "incr-copy-%-of-full-copy")
	b.ReportMetric((incr.Seconds()-incrCopy)/n, "incr-fixed-s")
}
