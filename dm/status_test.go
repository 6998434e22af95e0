package dm_test

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/dmsnap/dmsnap/dm"
)

func TestParseSnapshotStatus(t *testing.T) {
	active := func(alloc, total, meta dm.Sector) dm.SnapshotStatus {
		return dm.SnapshotStatus{State: dm.SnapshotActive, Allocated: alloc, Total: total, Metadata: meta, HasMetadata: true}
	}
	tests := []struct {
		in        string
		want      dm.SnapshotStatus
		percent   float64 // rounded to 2 decimals, as lvs prints Snap%
		used      dm.Sector
		mergeDone bool
	}{
		{"16/32768 16", active(16, 32768, 16), 0, 0, true},                         // fresh persistent snapshot
		{"16464/32768 80", active(16464, 32768, 80), 50.24, 16384, false},          // 8 MiB copied out
		{"16464/65536 80", active(16464, 65536, 80), 25.12, 16384, false},          // lvs Snap% 25.12
		{"2072/32768 24", active(2072, 32768, 24), 6.32, 2048, false},              // 1 MiB copied out
		{"14408/65536 64", active(14408, 65536, 64), 21.98, 14344, false},          // merging
		{"512/32768 0", active(512, 32768, 0), 1.56, 512, false},                   // transient: no metadata
		{"32768/32768 80", active(32768, 32768, 80), 100, 32688, false},            // full
		{"100/200", dm.SnapshotStatus{Allocated: 100, Total: 200}, 50, 100, false}, // target < 1.8.0
		{"200/200", dm.SnapshotStatus{Allocated: 200, Total: 200}, 100, 200, false},
		{"0/200", dm.SnapshotStatus{Total: 200}, 0, 0, false},
		{"Invalid", dm.SnapshotStatus{State: dm.SnapshotInvalid}, -1, 0, false},
		{"Merge failed", dm.SnapshotStatus{State: dm.SnapshotMergeFailed}, -1, 0, false},
		{"Overflow", dm.SnapshotStatus{State: dm.SnapshotOverflow}, 100, 0, false},
		{"Unknown", dm.SnapshotStatus{State: dm.SnapshotUnknown}, -1, 0, false},
	}
	for _, tt := range tests {
		got, err := dm.ParseSnapshotStatus(tt.in)
		if err != nil {
			t.Errorf("ParseSnapshotStatus(%q): %v", tt.in, err)
			continue
		}
		if got != tt.want {
			t.Errorf("ParseSnapshotStatus(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
		if p := math.Round(got.Percent()*100) / 100; p != tt.percent {
			t.Errorf("%q: Percent() = %v, want %v", tt.in, got.Percent(), tt.percent)
		}
		if got.State == dm.SnapshotActive && got.Used() != tt.used {
			t.Errorf("%q: Used() = %d, want %d", tt.in, got.Used(), tt.used)
		}
		if got.MergeDone() != tt.mergeDone {
			t.Errorf("%q: MergeDone() = %v", tt.in, got.MergeDone())
		}
		if got.Params() != tt.in {
			t.Errorf("%q: Params() = %q", tt.in, got.Params())
		}
	}
}

func TestParseSnapshotStatusTrims(t *testing.T) {
	got, err := dm.ParseSnapshotStatus(" Invalid\n")
	if err != nil || got.State != dm.SnapshotInvalid {
		t.Errorf("ParseSnapshotStatus with blanks = %+v, %v", got, err)
	}
}

// TestMergeProgress follows the statuses a real snapshot-merge printed on
// 6.1 while polling every 5 ms.
func TestMergeProgress(t *testing.T) {
	polls := []string{"14408/65536 64", "12352/65536 56", "10296/65536 48", "2072/65536 16", "16/65536 16"}
	want := []dm.Sector{14344, 12296, 10248, 2056, 0}
	for i, p := range polls {
		st, err := dm.ParseSnapshotStatus(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.MergeRemaining() != want[i] || st.MergeDone() != (i == len(polls)-1) {
			t.Errorf("%q: MergeRemaining() = %d, MergeDone() = %v", p, st.MergeRemaining(), st.MergeDone())
		}
	}
	for _, s := range []string{"Invalid", "Merge failed", "100/200"} {
		st, _ := dm.ParseSnapshotStatus(s)
		if st.MergeDone() || st.MergeRemaining() != 0 {
			t.Errorf("%q: MergeDone() = %v, MergeRemaining() = %d", s, st.MergeDone(), st.MergeRemaining())
		}
	}
}

func TestParseSnapshotStatusErrors(t *testing.T) {
	tests := []struct{ in, msg string }{
		{"", "want <allocated>/<total>"},
		{"garbage", "want <allocated>/<total>"},
		{"invalid", "want <allocated>/<total>"},
		{"Merge  failed", "want <allocated>/<total>"},
		{"16 32768 16", "want <allocated>/<total>"},
		{"16/0 0", "total is 0"},
		{"0/0", "total is 0"},
		{"17/16 0", "allocated 17 above total 16"},
		{"16/32 17", "metadata 17 above allocated 16"},
		{"16/32 16 4", `metadata "16 4"`},
		{"16/32768  16", `metadata " 16"`},
		{"-1/2 0", `allocated "-1"`},
		{"1/2/3", `total "2/3"`},
		{"16/x 16", `total "x"`},
		{"18446744073709551616/1 0", "allocated"},
	}
	for _, tt := range tests {
		got, err := dm.ParseSnapshotStatus(tt.in)
		if !errors.Is(err, dm.ErrSyntax) || got != (dm.SnapshotStatus{}) {
			t.Errorf("ParseSnapshotStatus(%q) = %+v, %v; want ErrSyntax", tt.in, got, err)
			continue
		}
		if !strings.Contains(err.Error(), fmt.Sprintf("%q", tt.in)) || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("ParseSnapshotStatus(%q): error %q does not quote the input or lacks %q", tt.in, err, tt.msg)
		}
	}
}

func TestParseStatus(t *testing.T) {
	tests := []struct {
		line string
		want dm.Status
	}{
		{"0 131072 snapshot-merge 16/65536 16", dm.SnapshotStatus{Allocated: 16, Total: 65536, Metadata: 16, HasMetadata: true}},
		{"0 131072 snapshot Invalid", dm.SnapshotStatus{State: dm.SnapshotInvalid}},
		{"0 131072 snapshot Overflow", dm.SnapshotStatus{State: dm.SnapshotOverflow}},
		{"0 131072 snapshot-origin", dm.EmptyStatus{}},
		{"0 131072 linear", dm.EmptyStatus{}},
		{"0 131072 error", dm.EmptyStatus{}},
		{"0 8 zero", dm.EmptyStatus{}},
		{"0 2097152 thin-pool 1 406/4161600 0/32768 - rw discard_passdown", dm.RawStatus{Line: dm.TargetLine{
			Length: 2097152, Type: "thin-pool", Params: "1 406/4161600 0/32768 - rw discard_passdown"}}},
	}
	for _, tt := range tests {
		l, err := dm.ParseTargetLine(tt.line)
		if err != nil {
			t.Fatal(err)
		}
		got, err := dm.ParseStatus(l)
		if err != nil || got != tt.want {
			t.Errorf("ParseStatus(%q) = %#v, %v; want %#v", tt.line, got, err, tt.want)
			continue
		}
		if got.Params() != l.Params {
			t.Errorf("ParseStatus(%q).Params() = %q", tt.line, got.Params())
		}
	}
	for _, l := range []dm.TargetLine{
		{Length: 8, Type: "snapshot", Params: "Broken"},
		{Length: 8, Type: "snapshot-merge", Params: ""},
		{Length: 8, Type: "linear", Params: "7:0 0"},
		{Length: 8, Type: "snapshot-origin", Params: "x"},
	} {
		got, err := dm.ParseStatus(l)
		if !errors.Is(err, dm.ErrSyntax) || got != nil || !strings.Contains(err.Error(), fmt.Sprintf("%q", l.Params)) {
			t.Errorf("ParseStatus(%v) = %v, %v; want ErrSyntax quoting %q", l, got, err, l.Params)
		}
	}
}

func TestSnapshotStateString(t *testing.T) {
	want := map[dm.SnapshotState]string{
		dm.SnapshotActive: "Active", dm.SnapshotInvalid: "Invalid", dm.SnapshotMergeFailed: "MergeFailed",
		dm.SnapshotOverflow: "Overflow", dm.SnapshotUnknown: "Unknown", dm.SnapshotState(9): "SnapshotState(9)",
	}
	for s, w := range want {
		if s.String() != w {
			t.Errorf("SnapshotState(%d).String() = %q, want %q", int(s), s.String(), w)
		}
	}
}

func BenchmarkParseSnapshotStatus(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := dm.ParseSnapshotStatus("16464/65536 80"); err != nil {
			b.Fatal(err)
		}
	}
}

// A snapshot-merge read during its handover ("0/N 0") is not done, though
// allocated equals metadata.
func TestMergeDoneDuringHandover(t *testing.T) {
	for params, want := range map[string]bool{"0/81920 0": false, "16/65536 16": true, "2072/65536 16": false} {
		s, err := dm.ParseSnapshotStatus(params)
		if err != nil {
			t.Fatal(err)
		}
		if s.MergeDone() != want {
			t.Errorf("%q: MergeDone %t, want %t", params, s.MergeDone(), want)
		}
	}
}
