package bench

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// Row is one figure of the comparison: dmsnap's value beside its anchor's,
// both measured in the same boot.
type Row struct {
	Figure string // what is measured, e.g. "`create` ×50"
	Anchor string // the reference tool, e.g. "`lvcreate -s` ×50"
	// Dmsnap and Ref are the two measurements in Unit; Ratio is
	// Dmsnap/Ref unless Higher, where bigger is better and it is still
	// reported as Dmsnap/Ref (above 1 is then a win).
	Dmsnap, Ref float64
	Unit        string // "s", "ms", "MB/s", "MB", "%"
	Higher      bool   // a throughput: bigger is better
}

// Seconds builds a row from two durations, in ms below 10 s and in s above.
func Seconds(figure, anchor string, d, ref time.Duration) Row {
	if d < 10*time.Second && ref < 10*time.Second {
		return Row{Figure: figure, Anchor: anchor, Dmsnap: ms(d), Ref: ms(ref), Unit: "ms"}
	}
	return Row{Figure: figure, Anchor: anchor, Dmsnap: d.Seconds(), Ref: ref.Seconds(), Unit: "s"}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Ratio is Dmsnap/Ref, or NaN-free 0 when the anchor measured nothing.
func (r Row) Ratio() (float64, bool) {
	if r.Ref == 0 {
		return 0, false
	}
	return r.Dmsnap / r.Ref, true
}

func value(v float64, unit string) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f %s", v, unit)
	case v >= 10:
		return fmt.Sprintf("%.1f %s", v, unit)
	default:
		return fmt.Sprintf("%.2f %s", v, unit)
	}
}

// WriteMarkdown writes rows as one Markdown table. A row whose anchor
// measured zero gets "n/a" as its ratio.
func WriteMarkdown(w io.Writer, rows []Row) error {
	var b strings.Builder
	b.WriteString("| figure | dmsnap | anchor | ratio |\n|---|---|---|---|\n")
	for _, r := range rows {
		b.WriteString(r.Markdown())
		b.WriteByte('\n')
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// Markdown is the row as one line of WriteMarkdown's table, without the
// newline.
func (r Row) Markdown() string {
	ratio := "n/a"
	if x, ok := r.Ratio(); ok {
		ratio = fmt.Sprintf("%.2f×", x)
		if r.Higher {
			ratio += " (higher is better)"
		}
	}
	return fmt.Sprintf("| %s | %s | %s: %s | %s |", r.Figure, value(r.Dmsnap, r.Unit), r.Anchor, value(r.Ref, r.Unit), ratio)
}
