package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dmsnap/dmsnap/internal/testutil"
	"github.com/dmsnap/dmsnap/lvm"
)

// benchDmsnap runs dmsnap with the state, lock and (empty) device
// directories under dir and fails b unless it exits 0.
func benchDmsnap(b *testing.B, dir string, args ...string) {
	b.Helper()
	var out, errb bytes.Buffer
	full := append([]string{"dmsnap", "--config-dir", filepath.Join(dir, "cfg"), "--lock-dir", filepath.Join(dir, "lock"), "--dev-dir", filepath.Join(dir, "dev")}, args...)
	if code := run(context.Background(), full, &out, &errb); code != 0 {
		b.Fatalf("dmsnap %s: exit %d: %s", strings.Join(args, " "), code, errb.String())
	}
}

// BenchmarkActivate100Volumes measures `dmsnap activate` of a pool on one
// image file with 100 volumes of one 1 MiB extent each:
//   - cold: from nothing (the pool deactivated, its loop device detached):
//     discovery, load, loop attach, and create + load + resume of 100
//     devices with their /dev/mapper nodes;
//   - noop: everything already active, every device kept (discovery,
//     load, 100 table reads).
func BenchmarkActivate100Volumes(b *testing.B) {
	testutil.RequireKernel(b)
	dir := b.TempDir()
	for _, d := range []string{"cfg", "lock", "dev"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			b.Fatal(err)
		}
	}
	b.Setenv(defaultPoolEnv, "")
	pool := "b" + strings.TrimPrefix(testutil.UniqueName(b), testutil.DMNamePrefix)
	benchDmsnap(b, dir, "pool", "create", pool, "--file", filepath.Join(dir, "pool.img"), "--size", "256M", "--extent-size", "1M")
	for i := range 100 {
		benchDmsnap(b, dir, "lv", "create", fmt.Sprintf("%s/v%03d", pool, i), "--size", "1M", "--no-activate")
	}
	b.Cleanup(func() { benchDmsnap(b, dir, "deactivate", pool) })

	b.Run("cold", func(b *testing.B) {
		for range b.N {
			b.StopTimer()
			benchDmsnap(b, dir, "deactivate", pool)
			b.StartTimer()
			benchDmsnap(b, dir, "activate", pool)
		}
	})
	b.Run("noop", func(b *testing.B) {
		benchDmsnap(b, dir, "activate", pool)
		b.ResetTimer()
		for range b.N {
			benchDmsnap(b, dir, "activate", pool)
		}
	})
}

// BenchmarkCommit1000Volumes commits a 1000-volume pool description on
// two PVs (per PV: write the spare slot's document, flush, write its
// header, flush), on real loop devices, and for comparison on image
// files in the same VM (lvm's BenchmarkCommit1000Volumes measures the
// latter on the host).
func BenchmarkCommit1000Volumes(b *testing.B) {
	testutil.RequireKernel(b)
	for _, kind := range []string{"loop", "file"} {
		b.Run(kind, func(b *testing.B) {
			var disks []lvm.Disk
			for range 2 {
				var path string
				if kind == "loop" {
					path, _ = testutil.ScratchLoop(b, 8<<30)
				} else {
					path = filepath.Join(b.TempDir(), "pv.img")
					if err := lvm.CreateImage(path, 8<<21); err != nil {
						b.Fatal(err)
					}
				}
				d, err := lvm.OpenDisk(path, true)
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { d.Close() })
				disks = append(disks, d)
			}
			s, err := lvm.Create("vg0", disks, lvm.CreateOptions{ExtentSize: 2048})
			if err != nil {
				b.Fatal(err)
			}
			p := s.Pool
			for i := range 1000 {
				if p, err = p.AddVolume(fmt.Sprintf("volume%04d", i), 3); err != nil {
					b.Fatal(err)
				}
			}
			if err := s.Commit(p); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for range b.N {
				if err := s.Commit(s.Pool); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
