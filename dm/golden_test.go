package dm_test

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/dmsnap/dmsnap/dm"
)

// hostFixtures are table and status lines observed on Debian kernels
// 6.1.0-56-amd64 and 6.12.95 (dmsetup, LVM2 2.03.16 and a raw-ioctl Go
// test), in the testdata/golden format (see testdata/README.md). Device
// names were stripped.
const hostFixtures = `
# dmsetup, 64 MiB origin, 16 MiB COW, chunk 8
table: 0 131072 snapshot-origin 254:0
table: 0 131072 linear 7:0 0
table: 0 131072 snapshot 254:0 254:2 P 8
table: 0 32768 linear 7:1 0
status: 0 131072 snapshot 16/32768 16
status: 0 131072 snapshot 16464/32768 80
status: 0 131072 snapshot 2072/32768 24
table: 0 131072 snapshot-merge 254:0 254:2 P 8
status: 0 131072 snapshot-merge 16/32768 16
status: 0 131072 snapshot Invalid
table: 0 131072 snapshot 254:0 254:2 P 8 2 discard_zeroes_cow discard_passdown_origin
table: 0 131072 snapshot 254:0 254:2 N 8
status: 0 131072 snapshot 512/32768 0
table: 0 131072 snapshot 254:0 254:2 PO 8
status: 0 131072 snapshot 16/2048 16
# raw ioctl test, 32 MiB COW, merge progress
status: 0 131072 snapshot 16464/65536 80
status: 0 131072 snapshot-merge 14408/65536 64
status: 0 131072 snapshot-merge 12352/65536 56
status: 0 131072 snapshot-merge 10296/65536 48
status: 0 131072 snapshot-merge 2072/65536 16
status: 0 131072 snapshot-merge 16/65536 16
table: 0 131072 snapshot 254:0 254:2 N 16
status: 0 131072 snapshot 2048/65536 0
table: 0 131072 snapshot 254:0 254:3 PO 8
status: 0 131072 snapshot Overflow
# LVM2 2.03.16
table: 0 131072 snapshot-origin 254:1
table: 0 131072 linear 7:0 2048
table: 0 131072 snapshot 254:1 254:2 P 8
table: 0 65536 linear 7:0 133120
table: 0 131072 snapshot-merge 254:1 254:2 P 8
table: 0 131072 error
# 6.12.95
table: 0 131072 snapshot 254:0 7:1 P 8 2 discard_zeroes_cow discard_passdown_origin
# statuses of targets that report nothing
status: 0 131072 snapshot-origin
status: 0 131072 linear
status: 0 131072 error
`

// goldenRecord is one "table:" or "status:" line of a golden file.
type goldenRecord struct {
	source string // file:line
	kind   string // "table" or "status"
	line   string // the target line after the prefix
}

func parseGolden(t testing.TB, name, text string) []goldenRecord {
	t.Helper()
	var recs []goldenRecord
	sc := bufio.NewScanner(strings.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		s := strings.TrimSpace(sc.Text())
		if s == "" || s[0] == '#' {
			continue
		}
		kind, line, ok := strings.Cut(s, ": ")
		if !ok || (kind != "table" && kind != "status") {
			t.Fatalf("%s:%d: want \"table: ...\" or \"status: ...\", have %q", name, n, s)
		}
		recs = append(recs, goldenRecord{source: name + ":" + strconv.Itoa(n), kind: kind, line: line})
	}
	return recs
}

// goldenRecords returns the host fixtures and every record of
// testdata/golden/*.txt.
func goldenRecords(t testing.TB) []goldenRecord {
	t.Helper()
	recs := parseGolden(t, "hostFixtures", hostFixtures)
	files, err := filepath.Glob(filepath.Join("testdata", "golden", "*.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, parseGolden(t, f, string(b))...)
	}
	return recs
}

// TestGolden checks that every kernel-printed line parses and that the
// typed value prints the same bytes again.
func TestGolden(t *testing.T) {
	recs := goldenRecords(t)
	var tables, statuses int
	for _, r := range recs {
		l, err := dm.ParseTargetLine(r.line)
		if err != nil {
			t.Errorf("%s: %v", r.source, err)
			continue
		}
		switch r.kind {
		case "table":
			tables++
			seg, err := dm.ParseTarget(l)
			if errors.Is(err, dm.ErrUnknownTarget) {
				continue
			}
			if err != nil {
				t.Errorf("%s: ParseTarget: %v", r.source, err)
				continue
			}
			if got := seg.Line().String(); got != r.line {
				t.Errorf("%s: reprinted table line\n got %q\nwant %q", r.source, got, r.line)
			}
		case "status":
			statuses++
			st, err := dm.ParseStatus(l)
			if err != nil {
				t.Errorf("%s: ParseStatus: %v", r.source, err)
				continue
			}
			if got := st.Params(); got != l.Params {
				t.Errorf("%s: reprinted status %q, want %q", r.source, got, l.Params)
			}
		}
	}
	if tables == 0 || statuses == 0 {
		t.Fatalf("golden records: %d tables, %d statuses; want some of each", tables, statuses)
	}
	t.Logf("%d table and %d status records", tables, statuses)
}
