package dm_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/dmsnap/dmsnap/dm"
)

func dev(major, minor uint32) dm.DevNum { return dm.DevNum{Major: major, Minor: minor} }

func TestParseTableTextObserved(t *testing.T) {
	tests := []struct {
		text string
		want dm.Target
	}{
		{"0 131072 linear 7:0 2048", dm.Linear{Dev: dev(7, 0), Offset: 2048}},
		{"0 131072 snapshot-origin 254:1", dm.SnapshotOrigin{Origin: dev(254, 1)}},
		{"0 131072 error", dm.Error{}},
		{"0 131072 zero", dm.Zero{}},
		{"0 131072 snapshot 254:0 254:2 P 8", dm.Snapshot{Origin: dev(254, 0), COW: dev(254, 2), Store: dm.Persistent, ChunkSectors: 8}},
		{"0 131072 snapshot 254:0 254:2 N 16", dm.Snapshot{Origin: dev(254, 0), COW: dev(254, 2), Store: dm.Transient, ChunkSectors: 16}},
		{"0 131072 snapshot 254:0 254:3 PO 8", dm.Snapshot{Origin: dev(254, 0), COW: dev(254, 3), Store: dm.PersistentOverflow, ChunkSectors: 8}},
		{"0 131072 snapshot 254:0 7:1 P 8 2 discard_zeroes_cow discard_passdown_origin",
			dm.Snapshot{Origin: dev(254, 0), COW: dev(7, 1), Store: dm.Persistent, ChunkSectors: 8, DiscardZeroesCOW: true, DiscardPassdownOrigin: true}},
		{"0 131072 snapshot 254:0 7:1 P 8 1 discard_zeroes_cow",
			dm.Snapshot{Origin: dev(254, 0), COW: dev(7, 1), Store: dm.Persistent, ChunkSectors: 8, DiscardZeroesCOW: true}},
		{"0 131072 snapshot-merge 254:1 254:2 P 8", dm.SnapshotMerge{Origin: dev(254, 1), COW: dev(254, 2), Store: dm.Persistent, ChunkSectors: 8}},
		{"0 131072 snapshot-merge 254:1 254:2 PO 1024", dm.SnapshotMerge{Origin: dev(254, 1), COW: dev(254, 2), Store: dm.PersistentOverflow, ChunkSectors: 1024}},
	}
	for _, tt := range tests {
		tab, err := dm.ParseTableText(tt.text)
		if err != nil {
			t.Errorf("ParseTableText(%q): %v", tt.text, err)
			continue
		}
		want := dm.Table{{Start: 0, Length: 131072, Target: tt.want}}
		if len(tab) != 1 || tab[0].Target != tt.want || !tab.Equal(want) {
			t.Errorf("ParseTableText(%q) = %#v, want %#v", tt.text, tab, want)
		}
		// The kernel's text is canonical: the builder must print it back.
		if got := tab.String(); got != tt.text {
			t.Errorf("String() = %q, want %q", got, tt.text)
		}
	}
}

// TestTableRoundTrip builds an LVM-like layout (two linear segments and a
// snapshot table), then goes builder -> Lines -> String -> ParseTableText.
func TestTableRoundTrip(t *testing.T) {
	tables := map[string]dm.Table{
		"real": {
			{Start: 0, Length: 2048, Target: dm.Linear{Dev: dev(7, 0), Offset: 2048}},
			{Start: 2048, Length: 129024, Target: dm.Linear{Dev: dev(7, 1), Offset: 0}},
			{Start: 131072, Length: 8, Target: dm.Zero{}},
		},
		"snap": {{Start: 0, Length: 131072, Target: dm.Snapshot{
			Origin: dev(254, 0), COW: dev(254, 2), Store: dm.Persistent, ChunkSectors: 8,
			DiscardZeroesCOW: true, DiscardPassdownOrigin: true,
		}}},
	}
	wantText := map[string]string{
		"real": "0 2048 linear 7:0 2048\n2048 129024 linear 7:1 0\n131072 8 zero",
		"snap": "0 131072 snapshot 254:0 254:2 P 8 2 discard_zeroes_cow discard_passdown_origin",
	}
	for name, tab := range tables {
		lines, err := tab.Lines()
		if err != nil {
			t.Fatalf("%s: Lines: %v", name, err)
		}
		if len(lines) != len(tab) {
			t.Fatalf("%s: %d lines for %d segments", name, len(lines), len(tab))
		}
		var sb strings.Builder
		for i, l := range lines {
			if i > 0 {
				sb.WriteByte('\n')
			}
			sb.WriteString(l.String())
		}
		if got := tab.String(); got != sb.String() || got != wantText[name] {
			t.Errorf("%s: String() = %q, Lines give %q, want %q", name, got, sb.String(), wantText[name])
		}
		back, err := dm.ParseTable(lines)
		if err != nil {
			t.Fatalf("%s: ParseTable: %v", name, err)
		}
		text, err := dm.ParseTableText("# comment\n\n" + tab.String() + "\n")
		if err != nil {
			t.Fatalf("%s: ParseTableText: %v", name, err)
		}
		if !back.Equal(tab) || !text.Equal(tab) {
			t.Errorf("%s: round trip changed the table:\n%v\n%v", name, back, text)
		}
	}
	if got := tables["real"].Len(); got != 131080 {
		t.Errorf("Len() = %d, want 131080", got)
	}
}

func TestTableEqual(t *testing.T) {
	snap := dm.Snapshot{Origin: dev(254, 0), COW: dev(254, 2), Store: dm.Persistent, ChunkSectors: 8}
	base := dm.Table{{Start: 0, Length: 100, Target: snap}}
	other := snap
	other.Store = dm.PersistentOverflow
	for name, u := range map[string]dm.Table{
		"length":  {{Start: 0, Length: 101, Target: snap}},
		"store":   {{Start: 0, Length: 100, Target: other}},
		"type":    {{Start: 0, Length: 100, Target: dm.SnapshotMerge(snap)}},
		"nil":     {{Start: 0, Length: 100}},
		"longer":  {{Start: 0, Length: 100, Target: snap}, {Start: 100, Length: 1, Target: dm.Zero{}}},
		"empty":   nil,
		"startAt": {{Start: 1, Length: 100, Target: snap}},
	} {
		if base.Equal(u) || u.Equal(base) {
			t.Errorf("%s: Equal reports true", name)
		}
	}
	if !base.Equal(dm.Table{{Start: 0, Length: 100, Target: snap}}) {
		t.Error("Equal reports false for identical tables")
	}
}

func TestSnapshotMergeConversion(t *testing.T) {
	snap := dm.Snapshot{Origin: dev(254, 0), COW: dev(254, 2), Store: dm.Persistent, ChunkSectors: 8, DiscardZeroesCOW: true}
	m := dm.SnapshotMerge(snap)
	if m.Type() != "snapshot-merge" || m.Params() != snap.Params() || m.Params() != "254:0 254:2 P 8 1 discard_zeroes_cow" {
		t.Errorf("merge = %s %q, snapshot params %q", m.Type(), m.Params(), snap.Params())
	}
	snap.Store = dm.Transient
	if err := snap.Validate(); err != nil {
		t.Errorf("transient snapshot: %v", err)
	}
	if err := dm.SnapshotMerge(snap).Validate(); !errors.Is(err, dm.ErrInvalidTable) {
		t.Errorf("transient snapshot-merge: err = %v, want ErrInvalidTable", err)
	}
}

func TestTableValidate(t *testing.T) {
	good := dm.Snapshot{Origin: dev(254, 0), COW: dev(254, 2), Store: dm.Persistent, ChunkSectors: 8}
	with := func(f func(*dm.Snapshot)) dm.Table {
		s := good
		f(&s)
		return dm.Table{{Start: 0, Length: 64, Target: s}}
	}
	lin := dm.Linear{Dev: dev(7, 0)}
	tests := []struct {
		name string
		tab  dm.Table
		want string // substring of the error
	}{
		{"empty", nil, "no targets"},
		{"gap", dm.Table{{Start: 0, Length: 8, Target: lin}, {Start: 16, Length: 8, Target: lin}}, "segment 1 starts at sector 16, want 8"},
		{"overlap", dm.Table{{Start: 0, Length: 8, Target: lin}, {Start: 4, Length: 8, Target: lin}}, "segment 1 starts at sector 4"},
		{"not from 0", dm.Table{{Start: 8, Length: 8, Target: lin}}, "segment 0 starts at sector 8, want 0"},
		{"zero length", dm.Table{{Start: 0, Length: 0, Target: lin}}, "length 0"},
		{"overflow", dm.Table{{Start: 0, Length: 1 << 63, Target: lin}, {Start: 1 << 63, Length: 1 << 63, Target: lin}}, "past the last sector"},
		{"nil target", dm.Table{{Start: 0, Length: 8}}, "no target"},
		{"linear no dev", dm.Table{{Start: 0, Length: 8, Target: dm.Linear{Offset: 8}}}, "linear: no device"},
		{"origin no dev", dm.Table{{Start: 0, Length: 8, Target: dm.SnapshotOrigin{}}}, "snapshot-origin: no origin device"},
		{"passdown alone", with(func(s *dm.Snapshot) { s.DiscardPassdownOrigin = true }), "discard_passdown_origin depends on discard_zeroes_cow"},
		{"cow is origin", with(func(s *dm.Snapshot) { s.COW = s.Origin }), "COW device 254:0 is the origin device"},
		{"no cow", with(func(s *dm.Snapshot) { s.COW = dm.DevNum{} }), "no COW device"},
		{"no origin", with(func(s *dm.Snapshot) { s.Origin = dm.DevNum{} }), "no origin device"},
		{"bad store", with(func(s *dm.Snapshot) { s.Store = "p" }), `store type "p" is not P, N or PO`},
		{"no store", with(func(s *dm.Snapshot) { s.Store = "" }), `store type "" is not`},
		{"chunk 0", with(func(s *dm.Snapshot) { s.ChunkSectors = 0 }), "chunk size 0 sectors is not a power of two"},
		{"chunk 24", with(func(s *dm.Snapshot) { s.ChunkSectors = 24 }), "chunk size 24 sectors is not a power of two"},
		{"chunk 2^22", with(func(s *dm.Snapshot) { s.ChunkSectors = 1 << 22 }), "above the kernel limit 4194303"},
		{"merge transient", dm.Table{{Start: 0, Length: 8, Target: dm.SnapshotMerge{Origin: dev(1, 1), COW: dev(1, 2), Store: dm.Transient, ChunkSectors: 8}}}, `snapshot-merge: store "N" cannot merge`},
	}
	for _, tt := range tests {
		err := tt.tab.Validate()
		if !errors.Is(err, dm.ErrInvalidTable) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Validate() = %v, want ErrInvalidTable containing %q", tt.name, err, tt.want)
		}
		if lines, err2 := tt.tab.Lines(); err2 == nil || lines != nil {
			t.Errorf("%s: Lines() = %v, %v; want an error", tt.name, lines, err2)
		}
	}
	if err := with(func(s *dm.Snapshot) { s.ChunkSectors = 1 << 21 }).Validate(); err != nil {
		t.Errorf("largest kernel chunk: %v", err)
	}
}

func TestCheckChunkSectors(t *testing.T) {
	for _, n := range []dm.Sector{8, 16, 32, 512, 1024} {
		if err := dm.CheckChunkSectors(n); err != nil {
			t.Errorf("CheckChunkSectors(%d) = %v", n, err)
		}
	}
	for _, n := range []dm.Sector{0, 1, 4, 12, 1000, 2048} {
		if err := dm.CheckChunkSectors(n); !errors.Is(err, dm.ErrInvalidTable) {
			t.Errorf("CheckChunkSectors(%d) = %v, want ErrInvalidTable", n, err)
		}
	}
}

// TestParseTargetKernelChunks: the parser accepts every chunk size the
// kernel can print, also outside dmsnap's creation range.
func TestParseTargetKernelChunks(t *testing.T) {
	for _, chunk := range []string{"1", "2", "4", "16", "2048", "2097152"} {
		l := dm.TargetLine{Length: 64, Type: "snapshot", Params: "254:0 254:2 P " + chunk}
		seg, err := dm.ParseTarget(l)
		if err != nil {
			t.Errorf("chunk %s: %v", chunk, err)
			continue
		}
		if got := seg.Line(); got != l {
			t.Errorf("chunk %s: reprinted as %v", chunk, got)
		}
	}
}

func TestParseTargetErrors(t *testing.T) {
	tests := []struct {
		typ, params string
		want        error
		msg         string // substring of the error
	}{
		{"linear", "/dev/loop0 0", dm.ErrSyntax, `device "/dev/loop0" is not major:minor`},
		{"linear", "7:0", dm.ErrSyntax, "want 2 arguments"},
		{"linear", "7:0 0 1", dm.ErrSyntax, "want 2 arguments"},
		{"linear", "7:0 -1", dm.ErrSyntax, `offset "-1" is not a decimal number`},
		{"linear", "7:x 0", dm.ErrSyntax, `device "7:x"`},
		{"linear", "7: 0", dm.ErrSyntax, `device "7:"`},
		{"linear", "4294967296:0 0", dm.ErrSyntax, `device "4294967296:0"`},
		{"linear", "0:0 0", dm.ErrInvalidTable, "no device"},
		{"error", "x", dm.ErrSyntax, "want no arguments"},
		{"zero", "0", dm.ErrSyntax, "want no arguments"},
		{"snapshot-origin", "", dm.ErrSyntax, "want 1 argument"},
		{"snapshot-origin", "/dev/mapper/base-real", dm.ErrSyntax, `"/dev/mapper/base-real"`},
		{"snapshot", "254:0 254:2 P", dm.ErrSyntax, "want at least 4 arguments"},
		{"snapshot", "254:0 254:2 X 8", dm.ErrSyntax, `store type "X" is not P, N or PO`},
		{"snapshot", "254:0 254:2 p 8", dm.ErrSyntax, `store type "p"`},
		{"snapshot", "254:0 254:2 P eight", dm.ErrSyntax, `chunk size "eight"`},
		{"snapshot", "254:0 254:2 P 12", dm.ErrInvalidTable, "not a power of two"},
		{"snapshot", "254:0 254:2 P 0", dm.ErrInvalidTable, "not a power of two"},
		{"snapshot", "254:0 254:2 P 8 1", dm.ErrSyntax, "feature count 1, but 0 features follow"},
		{"snapshot", "254:0 254:2 P 8 3 a b c", dm.ErrSyntax, `feature count "3"`},
		{"snapshot", "254:0 254:2 P 8 1 discard_all", dm.ErrSyntax, `unknown snapshot feature "discard_all"`},
		{"snapshot", "254:0 254:2 P 8 2 discard_zeroes_cow discard_zeroes_cow", dm.ErrSyntax, "repeated"},
		{"snapshot", "254:0 254:2 P 8 1 discard_passdown_origin", dm.ErrInvalidTable, "depends on discard_zeroes_cow"},
		{"snapshot", "254:2 254:2 P 8", dm.ErrInvalidTable, "is the origin device"},
		{"snapshot-merge", "254:0 254:2 N 8", dm.ErrInvalidTable, "cannot merge"},
		{"thin-pool", "254:0 254:1 128 0", dm.ErrUnknownTarget, `"thin-pool"`},
		{"", "", dm.ErrUnknownTarget, `""`},
	}
	for _, tt := range tests {
		l := dm.TargetLine{Length: 8, Type: tt.typ, Params: tt.params}
		seg, err := dm.ParseTarget(l)
		if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("ParseTarget(%v) = %v, want %v containing %q", l, err, tt.want, tt.msg)
		}
		if seg != (dm.Segment{}) {
			t.Errorf("ParseTarget(%v) returned %#v with the error", l, seg)
		}
		if err != nil && tt.want != dm.ErrUnknownTarget && !strings.Contains(err.Error(), `"`+tt.params+`"`) {
			t.Errorf("ParseTarget(%v) error %q does not quote the parameters", l, err)
		}
	}
}

func TestParseTargetLenient(t *testing.T) {
	// The kernel matches feature names case-insensitively and in any order;
	// the canonical form is what the kernel prints.
	seg, err := dm.ParseTarget(dm.TargetLine{Length: 8, Type: "snapshot",
		Params: "254:0  254:2\tP 8 2 DISCARD_PASSDOWN_ORIGIN discard_zeroes_cow"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := seg.Target.Params(), "254:0 254:2 P 8 2 discard_zeroes_cow discard_passdown_origin"; got != want {
		t.Errorf("Params() = %q, want %q", got, want)
	}
	seg, err = dm.ParseTarget(dm.TargetLine{Length: 8, Type: "snapshot", Params: "254:0 254:2 P 8 0"})
	if err != nil || seg.Target.Params() != "254:0 254:2 P 8" {
		t.Errorf("zero features: %v, %v", seg, err)
	}
}

func TestParseTargetLine(t *testing.T) {
	tests := []struct {
		in   string
		want dm.TargetLine
	}{
		{"0 131072 linear 7:0 2048", dm.TargetLine{Start: 0, Length: 131072, Type: "linear", Params: "7:0 2048"}},
		{"  5 7 error  \n", dm.TargetLine{Start: 5, Length: 7, Type: "error"}},
		{"0\t8\tthin-pool 254:0  254:1 128", dm.TargetLine{Length: 8, Type: "thin-pool", Params: "254:0  254:1 128"}},
	}
	for _, tt := range tests {
		got, err := dm.ParseTargetLine(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseTargetLine(%q) = %#v, %v; want %#v", tt.in, got, err, tt.want)
		}
	}
	for _, in := range []string{
		"", "0", "0 8", "vg0-base-real: 0 131072 linear 7:0 2048", "-1 8 zero", "0 0x8 zero", "0 18446744073709551616 zero",
	} {
		got, err := dm.ParseTargetLine(in)
		if !errors.Is(err, dm.ErrSyntax) || !strings.Contains(err.Error(), `"`+in+`"`) || got != (dm.TargetLine{}) {
			t.Errorf("ParseTargetLine(%q) = %#v, %v; want ErrSyntax quoting the line", in, got, err)
		}
	}
	// With the name stripped, dmsetup's table output parses.
	_, rest, _ := strings.Cut("vg0-base-real: 0 131072 linear 7:0 2048", ": ")
	if tab, err := dm.ParseTableText(rest); err != nil || !tab.Equal(dm.Table{{Length: 131072, Target: dm.Linear{Dev: dev(7, 0), Offset: 2048}}}) {
		t.Errorf("stripped line: %v, %v", tab, err)
	}
}

func TestParseTableTextErrors(t *testing.T) {
	tests := []struct {
		text string
		want error
		msg  string
	}{
		{"", dm.ErrInvalidTable, "no targets"},
		{"# only a comment\n", dm.ErrInvalidTable, "no targets"},
		{"0 8 zero\n16 8 zero", dm.ErrInvalidTable, "segment 1 starts at sector 16"},
		{"0 8 zero\nbogus", dm.ErrSyntax, `line 2: target line "bogus"`},
		{"0 8 crypt aes 0 7:0 0", dm.ErrUnknownTarget, `"crypt"`},
	}
	for _, tt := range tests {
		tab, err := dm.ParseTableText(tt.text)
		if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.msg) || tab != nil {
			t.Errorf("ParseTableText(%q) = %v, %v; want %v containing %q", tt.text, tab, err, tt.want, tt.msg)
		}
	}
}

func TestParseDevNum(t *testing.T) {
	for in, want := range map[string]dm.DevNum{"7:0": dev(7, 0), "254:12": dev(254, 12), "0:0": {}, "4095:1048575": dev(4095, 1048575)} {
		got, err := dm.ParseDevNum(in)
		if err != nil || got != want || got.String() != in {
			t.Errorf("ParseDevNum(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", ":", "7", "7:", ":0", "7:0:1", "+7:0", "7:-1", "/dev/loop0", "0x7:0", " 7:0"} {
		if got, err := dm.ParseDevNum(in); !errors.Is(err, dm.ErrSyntax) || got != (dm.DevNum{}) || !strings.Contains(err.Error(), `"`+in+`"`) {
			t.Errorf("ParseDevNum(%q) = %v, %v; want ErrSyntax quoting the input", in, got, err)
		}
	}
}

func BenchmarkParseTableText(b *testing.B) {
	const text = "0 131072 snapshot 254:0 254:2 P 8 2 discard_zeroes_cow discard_passdown_origin"
	b.ReportAllocs()
	for b.Loop() {
		if _, err := dm.ParseTableText(text); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkTableLines(b *testing.B) {
	tab := dm.Table{{Start: 0, Length: 131072, Target: dm.Snapshot{
		Origin: dev(254, 0), COW: dev(254, 2), Store: dm.Persistent, ChunkSectors: 8,
		DiscardZeroesCOW: true, DiscardPassdownOrigin: true,
	}}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tab.Lines(); err != nil {
			b.Fatal(err)
		}
	}
}
