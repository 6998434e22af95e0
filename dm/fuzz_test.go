package dm_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/dmsnap/dmsnap/dm"
)

// FuzzParseTableText checks that exactly one of table and error is set, that
// a parsed table is valid, and that it round-trips through String.
func FuzzParseTableText(f *testing.F) {
	for _, r := range goldenRecords(f) {
		if r.kind == "table" {
			f.Add(r.line)
		}
	}
	f.Add("0 2048 linear 7:0 2048\n2048 129024 linear 7:1 0\n131072 8 zero")
	f.Add("# c\n0 8 snapshot 1:2 1:3 PO 16 1 discard_zeroes_cow\n")
	f.Add("0 8 snapshot-merge 1:2 1:3 N 8")
	f.Fuzz(func(t *testing.T, text string) {
		tab, err := dm.ParseTableText(text)
		if err != nil {
			if tab != nil {
				t.Fatalf("table %v returned with error %v", tab, err)
			}
			if !errors.Is(err, dm.ErrSyntax) && !errors.Is(err, dm.ErrInvalidTable) && !errors.Is(err, dm.ErrUnknownTarget) {
				t.Fatalf("error %v wraps no sentinel", err)
			}
			return
		}
		if len(tab) == 0 {
			t.Fatal("empty table without error")
		}
		if err := tab.Validate(); err != nil {
			t.Fatalf("parsed table invalid: %v", err)
		}
		lines, err := tab.Lines()
		if err != nil || len(lines) != len(tab) {
			t.Fatalf("Lines() = %v, %v", lines, err)
		}
		out := tab.String()
		back, err := dm.ParseTableText(out)
		if err != nil {
			t.Fatalf("reparse %q: %v", out, err)
		}
		if !back.Equal(tab) || back.String() != out {
			t.Fatalf("round trip: %q -> %q -> %q", text, out, back.String())
		}
	})
}

// FuzzParseSnapshotStatus checks that exactly one of status and error is
// set, that parsed numbers are consistent, and that Params round-trips.
func FuzzParseSnapshotStatus(f *testing.F) {
	for _, r := range goldenRecords(f) {
		if r.kind != "status" {
			continue
		}
		if l, err := dm.ParseTargetLine(r.line); err == nil && strings.HasPrefix(l.Type, "snapshot") {
			f.Add(l.Params)
		}
	}
	for _, s := range []string{"Merge failed", "Unknown", "100/200", "16/32 17", "0/0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, params string) {
		st, err := dm.ParseSnapshotStatus(params)
		if err != nil {
			if st != (dm.SnapshotStatus{}) || !errors.Is(err, dm.ErrSyntax) {
				t.Fatalf("status %+v, error %v", st, err)
			}
			return
		}
		if st == (dm.SnapshotStatus{}) {
			t.Fatal("zero status without error")
		}
		if st.State == dm.SnapshotActive {
			if st.Metadata > st.Allocated || st.Allocated > st.Total {
				t.Fatalf("inconsistent numbers %+v", st)
			}
			if p := st.Percent(); !(p >= 0 && p <= 100) {
				t.Fatalf("Percent() = %v for %+v", p, st)
			}
		}
		back, err := dm.ParseSnapshotStatus(st.Params())
		if err != nil || back != st {
			t.Fatalf("round trip %q -> %q -> %+v, %v", params, st.Params(), back, err)
		}
	})
}
