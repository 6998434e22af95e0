package bench

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestWriteMarkdown(t *testing.T) {
	rows := []Row{
		Seconds("`create` ×50", "`lvcreate -s` ×50", 6300*time.Millisecond, 59500*time.Millisecond),
		Seconds("`ls`, 51 snapshots", "`lvs`", 217*time.Millisecond, 467*time.Millisecond),
		{Figure: "seq write, 1 snapshot", Anchor: "no snapshot", Dmsnap: 40, Ref: 80, Unit: "MB/s", Higher: true},
		{Figure: "broken anchor", Anchor: "none", Dmsnap: 1, Ref: 0, Unit: "s"},
	}
	var b bytes.Buffer
	if err := WriteMarkdown(&b, rows); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"| figure | dmsnap | anchor | ratio |",
		"|---|---|---|---|",
		"| `create` ×50 | 6.30 s | `lvcreate -s` ×50: 59.5 s | 0.11× |",
		"| `ls`, 51 snapshots | 217 ms | `lvs`: 467 ms | 0.46× |",
		"| seq write, 1 snapshot | 40.0 MB/s | no snapshot: 80.0 MB/s | 0.50× (higher is better) |",
		"| broken anchor | 1.00 s | none: 0.00 s | n/a |",
	}
	if got := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
