//go:build linux

package bench

import (
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dmsnap/dmsnap/dm"
	"github.com/dmsnap/dmsnap/internal/testutil"
	"github.com/dmsnap/dmsnap/lvm"
	"github.com/dmsnap/dmsnap/zfs"
)

// BenchmarkCompareZFS is the ZFS half of `make bench-compare`, a second
// boot with vmrun --tools zfs,lvm2 (bookworm's kernel only): the ingest
// figures, printed and written as BenchmarkCompare's ($DMSNAP_BENCH_OUT,
// $DMSNAP_BENCH_QUICK; the one section is "ingest").
func BenchmarkCompareZFS(b *testing.B) {
	testutil.RequireKernel(b)
	bin := benchBinary(b)
	for _, t := range []string{"zfs", "zpool", "dd"} {
		if _, err := exec.LookPath(t); err != nil {
			b.Fatalf("%s is not in PATH (vmrun --tools zfs,lvm2 puts zfs there): %v", t, err)
		}
	}
	runSections(b, bin, []section{{"ingest", ingestRows}})
}

// jsonIngest is the part of `dmsnap --json ingest`'s output the
// benchmark reads.
type jsonIngest struct {
	Snapshot string `json:"snapshot"`
	Cursor   string `json:"cursor"`
	Full     bool   `json:"full"`
	Reason   string `json:"full_reason"`
	Changed  uint64 `json:"changed_chunks"`
}

// zvol creates a sparse zvol of size bytes (volblocksize 16K, as
// ingest's default) and returns its device.
func zvol(b *testing.B, ds string, size int64) string {
	b.Helper()
	if out, err := exec.Command("zfs", "create", "-s", "-b", "16K", "-V", fmt.Sprint(size), ds).CombinedOutput(); err != nil {
		b.Fatalf("zfs create %s: %v: %s", ds, err, out)
	}
	dev, err := (&zfs.Runner{}).ZvolDevice(b.Context(), ds, 30*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	return dev
}

// writeRandom writes size bytes of random data (a fresh 1 MiB block each
// time, no zero block) to dev, buffered as dd would, with one fsync at
// the end, and returns how long it took.
func writeRandom(b *testing.B, dev string, size int64) time.Duration {
	b.Helper()
	f, err := os.OpenFile(dev, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	rng := mrand.NewChaCha8([32]byte{1})
	blocks := make([][]byte, size>>20)
	for i := range blocks {
		blocks[i] = make([]byte, 1<<20)
		_, _ = rng.Read(blocks[i])
	}
	start := time.Now()
	for i, blk := range blocks {
		if _, err := f.WriteAt(blk, int64(i)<<20); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
	return time.Since(start)
}

// ingestRows: an origin of 128 MiB of random data in a pool on image
// files and a zpool on a scratch loop device. After one full ingest that
// creates the zvol, each of 2 rounds measures: `dmsnap ingest --full`;
// `dd bs=1M conv=fsync` of the same frozen snapshot (the ingest's
// cursor) into a second zvol; the physical limit, min(read rate of that
// snapshot alone, `dd iflag=direct` to /dev/null; write rate of a third
// zvol alone, random 1 MiB blocks from memory + fsync); and an
// incremental ingest after 1% of the origin's 16 KiB chunks were
// rewritten. The best of the rounds is reported.
func ingestRows(b *testing.B, bin string, emit func(Row)) {
	size := int64(quickOr(128, 32)) << 20
	rounds := quickOr(2, 1)
	d := dmsnap{bin, b.TempDir()}
	pool := "bi" + strings.TrimPrefix(testutil.UniqueName(b), testutil.DMNamePrefix)
	img := func(n string) string {
		p := filepath.Join(d.dir, n)
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			b.Fatal(err)
		}
		// The origin plus two 32 MiB cursors (the old one stays
		// until the new one is committed) and metadata, over two PVs.
		if err := os.Truncate(p, size/2+64<<20); err != nil {
			b.Fatal(err)
		}
		return p
	}
	d.run(b, "pool", "create", pool, img("a.img"), img("b.img"))
	b.Cleanup(func() { d.run(b, "deactivate", pool) })
	d.run(b, "lv", "create", pool+"/base", "--size", fmt.Sprintf("%dM", size>>20))
	origin := dm.DevicePath(lvm.DMName(pool, "base", lvm.LayerNone))
	writeRandom(b, origin, size)

	zp := testutil.ScratchZpool(b, 4*size+512<<20) // sparse; zfs keeps 128 MiB of slop
	ds := zp + "/vol"
	var prev string // the previous ingest's ZFS snapshot, destroyed to bound the pool's use
	ingest := func(args ...string) (jsonIngest, time.Duration) {
		b.Helper()
		var out string
		t := timed(func() {
			out = d.run(b, append([]string{"--json", "--quiet", "ingest", pool + "/base", ds, "--cow", "32M"}, args...)...)
		})
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
		return j, t
	}
	ingest() // creates the zvol
	ddDev := zvol(b, zp+"/dd", size)

	var full, dd, rd, wr, incr time.Duration
	for r := range rounds {
		j, tf := ingest("--full")
		if !j.Full {
			b.Fatalf("--full ingest was not full: %+v", j)
		}
		pos := strings.IndexByte(j.Cursor, '/')
		if pos < 0 {
			b.Fatalf("ingest cursor %q: want POOL/NAME", j.Cursor)
		}
		snap := dm.DevicePath(lvm.DMName(j.Cursor[:pos], j.Cursor[pos+1:], lvm.LayerNone))
		td := timed(func() {
			if out, err := exec.Command("dd", "if="+snap, "of="+ddDev, "bs=1M", "conv=fsync", "status=none").CombinedOutput(); err != nil {
				b.Fatalf("dd: %v: %s", err, out)
			}
		})
		tr := timed(func() {
			if out, err := exec.Command("dd", "if="+snap, "of=/dev/null", "bs=1M", "iflag=direct", "status=none").CombinedOutput(); err != nil {
				b.Fatalf("dd read: %v: %s", err, out)
			}
		})
		wds := fmt.Sprintf("%s/w%d", zp, r)
		tw := writeRandom(b, zvol(b, wds, size), size)
		if out, err := exec.Command("zfs", "destroy", wds).CombinedOutput(); err != nil {
			b.Fatalf("zfs destroy %s: %v: %s", wds, err, out)
		}

		const chunk = 16 << 10
		chunks := size / chunk
		buf := alignedBuf(b, 4<<10)
		f, err := os.OpenFile(origin, os.O_WRONLY, 0)
		if err != nil {
			b.Fatal(err)
		}
		for i := range chunks / 100 {
			buf[0] = byte(i)
			buf[1] = byte(r)
			if _, err := f.WriteAt(buf, mrand.Int64N(chunks)*chunk); err != nil {
				b.Fatal(err)
			}
		}
		if err := f.Close(); err != nil {
			b.Fatal(err)
		}
		j, ti := ingest()
		if j.Full {
			b.Fatalf("incremental ingest was full: %s", j.Reason)
		}
		fmt.Printf("ingest round %d: full %v, dd %v, snapshot read %v, zvol write %v, incremental %v (%d chunks)\n",
			r, tf.Round(time.Millisecond), td.Round(time.Millisecond), tr.Round(time.Millisecond), tw.Round(time.Millisecond), ti.Round(time.Millisecond), j.Changed)
		if r == 0 {
			full, dd, rd, wr, incr = tf, td, tr, tw, ti
			continue
		}
		full, dd, rd, wr, incr = min(full, tf), min(dd, td), min(rd, tr), min(wr, tw), min(incr, ti)
	}
	mib := size >> 20
	emit(Row{Figure: fmt.Sprintf("full ingest of %d MiB of random data (best of %d)", mib, rounds),
		Anchor: "`dd bs=1M conv=fsync` of the same frozen snapshot into a zvol", Dmsnap: MBps(size, full), Ref: MBps(size, dd), Unit: "MB/s", Higher: true})
	limit := min(MBps(size, rd), MBps(size, wr))
	emit(Row{Figure: fmt.Sprintf("full ingest against the physical limit (snapshot read alone %.1f MB/s, zvol write alone %.1f MB/s)", MBps(size, rd), MBps(size, wr)),
		Anchor: "min(read, write)", Dmsnap: MBps(size, full), Ref: limit, Unit: "MB/s", Higher: true})
	emit(Seconds(fmt.Sprintf("incremental ingest, 1%% of the 16 KiB chunks of %d MiB changed", mib), "the full ingest", incr, full))
}
