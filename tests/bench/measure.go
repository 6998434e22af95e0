package bench

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ProcCPUTicks parses a /proc/PID/stat line and returns utime+stime in
// clock ticks. The command name (field 2) is in parentheses and may hold
// spaces, so the fields are counted from the last ')'.
func ProcCPUTicks(stat string) (uint64, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("proc stat %q: no ')' after the command name", stat)
	}
	// After ") ": state(3) ppid(4) ... utime(14) stime(15).
	f := strings.Fields(stat[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("proc stat %q: %d fields after the command name, want at least 13", stat, len(f))
	}
	var sum uint64
	for _, s := range f[11:13] {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("proc stat %q: utime/stime %q: %w", stat, s, err)
		}
		sum += v
	}
	return sum, nil
}

// CPUPercent is the share of one CPU that ticks (at hz per second) are
// over window.
func CPUPercent(ticks uint64, hz int, window time.Duration) float64 {
	if window <= 0 || hz <= 0 {
		return 0
	}
	return 100 * float64(ticks) / float64(hz) / window.Seconds()
}

// MBps is bytes over d in MB/s (10^6 bytes), 0 for an empty duration.
func MBps(bytes int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(bytes) / 1e6 / d.Seconds()
}

// Median returns the median of ds (the lower middle for an even count)
// without reordering ds; 0 when empty.
func Median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[(len(s)-1)/2]
}

// Selected reports whether section name runs under the filter expr (a
// regular expression; empty selects everything).
func Selected(expr, name string) (bool, error) {
	if expr == "" {
		return true, nil
	}
	re, err := regexp.Compile(expr)
	if err != nil {
		return false, fmt.Errorf("DMSNAP_BENCH_ONLY=%q: %w", expr, err)
	}
	return re.MatchString(name), nil
}

// LsCounts splits total snapshots over origins as evenly as possible,
// the first origins taking the remainder.
func LsCounts(total, origins int) []int {
	if origins <= 0 {
		return nil
	}
	out := make([]int, origins)
	for i := range out {
		out[i] = total / origins
		if i < total%origins {
			out[i]++
		}
	}
	return out
}

// LsTotals parses $DMSNAP_BENCH_LS, a comma-separated list of increasing
// positive snapshot counts; empty gives def.
func LsTotals(v string, def []int) ([]int, error) {
	if v == "" {
		return def, nil
	}
	var out []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 || (len(out) > 0 && n <= out[len(out)-1]) {
			return nil, fmt.Errorf("DMSNAP_BENCH_LS=%q: want increasing positive counts, e.g. 10,100,1000", v)
		}
		out = append(out, n)
	}
	return out, nil
}
