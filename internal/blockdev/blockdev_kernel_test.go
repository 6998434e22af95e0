//go:build linux

package blockdev

import (
	"bytes"
	"fmt"
	"slices"
	"testing"

	"github.com/dmsnap/dmsnap/dm"
	"github.com/dmsnap/dmsnap/internal/testutil"
)

// TestKernelBlockDevice, on a loop device and a linear dm device over it:
//   - a strict Reader reads the device with O_DIRECT, at unaligned
//     offsets, what was written past the page cache;
//   - DevNum, IsDM, DMUUID and Holders say what sysfs says: the loop device
//     is held by the dm device, which is a dm device with our UUID;
//   - Writer.Zero deallocates a range (a loop device over a sparse file
//     takes PUNCH_HOLE) and the range reads as zeros.
func TestKernelBlockDevice(t *testing.T) {
	c := testutil.Client(t)
	const size = 8 << 20
	loopNum, loopPath := testutil.ScratchDev(t, size)
	data := testutil.Pattern(0x5a, 1<<20)
	testutil.MustWriteDirect(t, loopPath, 3<<20, data)

	r, err := Open(loopPath, Options{Strict: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if !r.Block() || !r.Direct() || r.Size() != size {
		t.Fatalf("Open(%s): block %v direct %v size %d", loopPath, r.Block(), r.Direct(), r.Size())
	}
	b := make([]byte, 10000)
	if _, err := r.ReadAt(b, 3<<20+123); err != nil || !bytes.Equal(b, data[123:123+len(b)]) {
		t.Fatalf("ReadAt: %v, or data differs", err)
	}

	major, minor, err := DevNum(loopPath)
	if err != nil || major != loopNum.Major || minor != loopNum.Minor {
		t.Fatalf("DevNum(%s) = %d:%d, %v; want %v", loopPath, major, minor, err, loopNum)
	}
	name, uuid := testutil.UniqueName(t), "DMSNAPTEST-blockdev"
	info := testutil.CreateDevice(t, c, name, uuid, dm.TargetLine{Length: size / 512, Type: "linear", Params: loopNum.String() + " 0"})
	if IsDM(loopPath) || !IsDM(dm.DevicePath(name)) {
		t.Errorf("IsDM: loop %v, dm %v", IsDM(loopPath), IsDM(dm.DevicePath(name)))
	}
	if got, ok := DMUUID(info.Dev.Major, info.Dev.Minor); !ok || got != uuid {
		t.Errorf("DMUUID = %q, %v; want %q", got, ok, uuid)
	}
	want := fmt.Sprintf("dm-%d (%s)", info.Dev.Minor, name)
	if h := Holders(loopPath); !slices.Contains(h, want) {
		t.Errorf("Holders(%s) = %v, want %q among them", loopPath, h, want)
	}
	if h := Holders(dm.DevicePath(name)); len(h) != 0 {
		t.Errorf("Holders of the unheld dm device = %v", h)
	}

	w, err := OpenWriter(loopPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Zero(3<<20, 64<<10); err != nil {
		t.Fatal(err)
	}
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	if w.Punched() != 64<<10 {
		t.Errorf("Punched = %d on a loop device over a sparse file, want %d", w.Punched(), 64<<10)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got := testutil.ReadDirect(t, loopPath, 3<<20, 128<<10)
	if !bytes.Equal(got[:64<<10], make([]byte, 64<<10)) || !bytes.Equal(got[64<<10:], data[64<<10:128<<10]) {
		t.Error("after Zero: the range is not zeros, or its neighbour changed")
	}
}
