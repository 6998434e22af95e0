package bench

import (
	"testing"
	"time"
)

func TestProcCPUTicks(t *testing.T) {
	// A command name with a space and a ')' in it, utime 250, stime 31.
	stat := "1234 (dm snap) x) S 1 1234 1234 0 -1 4194560 900 0 0 0 250 31 0 0 20 0 8 0 555 0 0"
	got, err := ProcCPUTicks(stat)
	if err != nil {
		t.Fatal(err)
	}
	if got != 281 {
		t.Errorf("ticks %d, want 281", got)
	}
	for _, bad := range []string{"1234 dmsnap S 1", "1 (a) S 1 2", "1 (a) S 1 1 1 0 -1 0 0 0 0 0 x 3 0"} {
		if _, err := ProcCPUTicks(bad); err == nil {
			t.Errorf("ProcCPUTicks(%q): no error", bad)
		}
	}
}

func TestCPUPercentAndMBps(t *testing.T) {
	if got := CPUPercent(50, 100, 10*time.Second); got != 5 {
		t.Errorf("CPUPercent = %v, want 5", got)
	}
	if got := CPUPercent(50, 100, 0); got != 0 {
		t.Errorf("CPUPercent over no window = %v, want 0", got)
	}
	if got := MBps(64e6, 2*time.Second); got != 32 {
		t.Errorf("MBps = %v, want 32", got)
	}
}

func TestMedian(t *testing.T) {
	ds := []time.Duration{5, 1, 9, 3}
	if got := Median(ds); got != 3 {
		t.Errorf("Median = %v, want 3", got)
	}
	if ds[0] != 5 {
		t.Error("Median reordered its input")
	}
	if Median(nil) != 0 {
		t.Error("Median(nil) != 0")
	}
}

func TestSelected(t *testing.T) {
	for _, c := range []struct {
		expr, name string
		want       bool
	}{{"", "merge", true}, {"merge|ls", "ls", true}, {"^stall$", "merge", false}} {
		if got, err := Selected(c.expr, c.name); err != nil || got != c.want {
			t.Errorf("Selected(%q, %q) = %v, %v; want %v", c.expr, c.name, got, err, c.want)
		}
	}
	if _, err := Selected("(", "x"); err == nil {
		t.Error("a bad expression gave no error")
	}
}

func TestLsCounts(t *testing.T) {
	got := LsCounts(1000, 10)
	sum := 0
	for _, n := range got {
		if n != 100 {
			t.Errorf("LsCounts(1000, 10) = %v", got)
		}
		sum += n
	}
	if g := LsCounts(13, 4); g[0] != 4 || g[1] != 3 || g[3] != 3 {
		t.Errorf("LsCounts(13, 4) = %v", g)
	}
	if sum != 1000 {
		t.Errorf("sum %d", sum)
	}
}

func TestLsTotals(t *testing.T) {
	got, err := LsTotals("10, 100,1000", nil)
	if err != nil || len(got) != 3 || got[2] != 1000 {
		t.Errorf("LsTotals = %v, %v", got, err)
	}
	if got, _ := LsTotals("", []int{7}); len(got) != 1 || got[0] != 7 {
		t.Errorf("default: %v", got)
	}
	for _, bad := range []string{"x", "10,5", "0", "10,,20"} {
		if _, err := LsTotals(bad, nil); err == nil {
			t.Errorf("LsTotals(%q): no error", bad)
		}
	}
}
