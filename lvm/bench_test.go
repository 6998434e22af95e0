package lvm

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/dmsnap/dmsnap/dm"
)

// BenchmarkCommit1000Volumes commits a pool of 1000 volumes on two image
// files (each commit: encode, then per PV write, fsync, header, fsync).
func BenchmarkCommit1000Volumes(b *testing.B) {
	dir := b.TempDir()
	var ds []Disk
	for i := range 2 {
		path := filepath.Join(dir, fmt.Sprintf("pv%d", i))
		if err := CreateImage(path, 8<<21); err != nil { // 8 GiB sparse
			b.Fatal(err)
		}
		d := must[*FileDisk](b)(OpenDisk(path, true))
		b.Cleanup(func() { d.Close() })
		ds = append(ds, d)
	}
	s := must[*Store](b)(Create("vg0", ds, CreateOptions{ExtentSize: 2048}))
	p := s.Pool
	for i := range 1000 {
		p = must[*Pool](b)(p.AddVolume(fmt.Sprintf("volume%04d", i), 3))
	}
	if err := s.Commit(p); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if err := s.Commit(s.Pool); err != nil {
			b.Fatal(err)
		}
	}
	_, payload, _ := encodeSlot(s.Pool)
	b.ReportMetric(float64(len(payload)), "doc-bytes")
}

// BenchmarkLoad1000Volumes reads the pool back.
func BenchmarkLoad1000Volumes(b *testing.B) {
	d := newMemDisk("/dev/a", 8<<21)
	s := must[*Store](b)(Create("vg0", disks(d), CreateOptions{ExtentSize: 2048}))
	p := s.Pool
	for i := range 1000 {
		p = must[*Pool](b)(p.AddVolume(fmt.Sprintf("volume%04d", i), 3))
	}
	if err := s.Commit(p); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		must[*Store](b)(Load(disks(d)))
	}
}

// BenchmarkActivate100Volumes plans and reconciles a 100-volume pool
// (10 of them origins with a snapshot each) against a fake kernel that
// already has every device: the steady state of `dmsnap activate`.
func BenchmarkActivate100Volumes(b *testing.B) {
	p := testPool(b, 10000)
	for i := range 90 {
		p = must[*Pool](b)(p.AddVolume(fmt.Sprintf("v%d", i), 10))
	}
	for i := range 10 {
		p = must[*Pool](b)(p.AddVolume(fmt.Sprintf("o%d", i), 10))
		p = must[*Pool](b)(p.AddSnapshot(SnapshotSpec{Name: fmt.Sprintf("s%d", i), Origin: fmt.Sprintf("o%d", i), COWExtents: 2, Store: dm.Persistent, ChunkSize: 8}))
	}
	devs := pvDevs(p)
	k := newFakeKernel()
	if _, _, err := Activate(k, p, devs, ActivateOptions{}); err != nil {
		b.Fatal(err)
	}
	b.Run("plan+reconcile", func(b *testing.B) {
		current := must[[]KernelDevice](b)(CurrentDevices(k, p.UUID, nil))
		for b.Loop() {
			desired, _, err := Plan(p, devs, PlanOptions{})
			if err != nil {
				b.Fatal(err)
			}
			for _, a := range Reconcile(p.UUID, desired, current) {
				if a.Kind != ActionKeep {
					b.Fatal(a)
				}
			}
		}
	})
	b.Run("cold-activate-fake", func(b *testing.B) {
		for b.Loop() {
			k := newFakeKernel()
			if _, _, err := Activate(k, p, devs, ActivateOptions{}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
