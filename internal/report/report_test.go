package report

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func sample() *Report {
	r := New(
		Column{Name: "name", Header: "NAME", Default: true},
		Column{Name: "origin", Header: "ORIGIN", Default: true},
		Column{Name: "size", Header: "SIZE", Kind: Size, Default: true},
		Column{Name: "use_pct", Header: "USE%", Kind: Percent},
		Column{Name: "chunks", Header: "CHUNKS", Kind: Count},
	)
	r.Add("vg0/db", nil, uint64(1<<30), nil, nil)
	r.Add("vg0/db-snap", "vg0/db", uint64(100<<20), 18.87, int64(604))
	r.Add("vg0/web-snap", "vg0/web", uint64(1<<30-1), 62.5, int64(20000))
	return r
}

func render(t *testing.T, r *Report, o Options) string {
	t.Helper()
	var b bytes.Buffer
	if err := r.Write(&b, o); err != nil {
		t.Fatalf("Write(%+v): %v", o, err)
	}
	return b.String()
}

func TestWriteDefaultsAligned(t *testing.T) {
	got := render(t, sample(), Options{})
	want := "" +
		"NAME          ORIGIN      SIZE\n" +
		"vg0/db                   1.00g\n" +
		"vg0/db-snap   vg0/db   100.00m\n" +
		"vg0/web-snap  vg0/web   <1.00g\n"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestFieldsSortSelect(t *testing.T) {
	tests := []struct {
		name string
		o    Options
		want string
	}{
		{"replace", Options{Fields: "name,use_pct", NoHeadings: true, Separator: ":"},
			"vg0/db:\nvg0/db-snap:18.87\nvg0/web-snap:62.50\n"},
		{"append", Options{Fields: "+chunks", NoHeadings: true, Separator: "|", Units: "m", NoSuffix: true},
			"vg0/db||1024.00|\nvg0/db-snap|vg0/db|100.00|604\nvg0/web-snap|vg0/web|<1024.00|20000\n"},
		{"sort desc", Options{Fields: "name", Sort: "-size,name", NoHeadings: true},
			"vg0/db\nvg0/web-snap\nvg0/db-snap\n"},
		{"select and", Options{Fields: "name", Select: "origin=~^vg0 && use_pct>20", NoHeadings: true},
			"vg0/web-snap\n"},
		{"select or paren not", Options{Fields: "name", Select: "!(size>=1g) || name='vg0/db'", NoHeadings: true},
			"vg0/db\nvg0/db-snap\nvg0/web-snap\n"},
		{"select size bare MiB", Options{Fields: "name", Select: "size<=100", NoHeadings: true},
			"vg0/db-snap\n"},
		{"select nil never matches", Options{Fields: "name", Select: "chunks<1000000", NoHeadings: true},
			"vg0/db-snap\nvg0/web-snap\n"},
		{"bytes", Options{Fields: "size", Units: "b", NoHeadings: true}, "1073741824b\n 104857600b\n1073741823b\n"},
		{"sectors", Options{Fields: "size", Units: "s", NoHeadings: true, NoSuffix: true}, " 2097152\n  204800\n<2097152\n"},
		{"SI", Options{Fields: "size", Units: "H", NoHeadings: true}, "   1.07G\n<104.86M\n   1.07G\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := render(t, sample(), tt.o); got != tt.want {
				t.Errorf("got\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}

func TestBadOptionsNameTheProblem(t *testing.T) {
	tests := []struct {
		o    Options
		want string
	}{
		{Options{Fields: "name,sise"}, `-o: unknown column "sise"; columns: name, origin, size, use_pct, chunks`},
		{Options{Sort: "-bogus"}, `-O: unknown column "bogus"`},
		{Options{Units: "x"}, `--units "x"`},
		{Options{Units: "kb"}, `--units "kb"`},
		{Options{Select: "size>"}, "incomplete comparison"},
		{Options{Select: "size>lots"}, `size: size "lots"`},
		{Options{Select: "use_pct>high"}, `"high" is not a number`},
		{Options{Select: "name=~'('"}, "error parsing regexp"},
		{Options{Select: "name==x"}, `name =: missing value before "="`},
		{Options{Select: "name~x"}, `unexpected '~'`},
		{Options{Select: "(name=x"}, "missing )"},
		{Options{Select: "name='x"}, "unterminated quote"},
		{Options{Select: "name=x y"}, `unexpected "y"`},
		{Options{Select: "'name'=x"}, "cannot be quoted"},
	}
	for _, tt := range tests {
		var b bytes.Buffer
		err := sample().Write(&b, tt.o)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: err %v, want it to contain %q", tt.o, err, tt.want)
		}
		if b.Len() != 0 {
			t.Errorf("%+v: printed %q before refusing", tt.o, b.String())
		}
	}
}

func TestJSONEnvelope(t *testing.T) {
	var b bytes.Buffer
	v := Version{Format: "dmsnap ls", Major: 1, Minor: 0}
	if err := sample().WriteJSON(&b, Options{Fields: "name,size,use_pct", Select: "size<1g"}, v); err != nil {
		t.Fatal(err)
	}
	var env struct {
		OutputVersion Version          `json:"output_version"`
		Report        []map[string]any `json:"report"`
	}
	if err := json.Unmarshal(b.Bytes(), &env); err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	if env.OutputVersion != v {
		t.Errorf("output_version %+v, want %+v", env.OutputVersion, v)
	}
	if len(env.Report) != 2 || env.Report[0]["name"] != "vg0/db-snap" || env.Report[1]["size"] != float64(1<<30-1) {
		t.Errorf("report %v", env.Report)
	}
	if _, ok := env.Report[0]["origin"]; ok {
		t.Errorf("-o name,size,use_pct kept origin: %v", env.Report[0])
	}
	// An empty selection is an empty list, never null.
	b.Reset()
	if err := sample().WriteJSON(&b, Options{Select: "size>1t"}, v); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), `"report": []`) {
		t.Errorf("empty report encoded as %s", b.String())
	}
}

func TestFormatSize(t *testing.T) {
	tests := []struct {
		bytes uint64
		units string
		want  string
	}{
		{0, "", "0b"},
		{512, "", "512b"},
		{1023, "h", "<1.00k"},
		{1024, "h", "1.00k"},
		{4 << 20, "", "4.00m"},
		{1<<30 + 1<<20*5, "", "1.00g"}, // 1.0049g shows as 1.00g: rounded down, no mark
		{1<<30 - 1, "", "<1.00g"},      // 0.9999g rounds up: marked
		{3 << 40, "g", "3072.00g"},
		{1 << 58, "e", "0.25e"},
		{1000000, "K", "1000.00K"},
		{513, "s", "<2s"},
	}
	for _, tt := range tests {
		if got := FormatSize(tt.bytes, tt.units, false); got != tt.want {
			t.Errorf("FormatSize(%d, %q) = %q, want %q", tt.bytes, tt.units, got, tt.want)
		}
	}
}

func TestParseSize(t *testing.T) {
	good := map[string]uint64{"1": 1 << 20, "1.5g": 3 << 29, "512b": 512, "8s": 4096, "1K": 1000, "0": 0}
	for in, want := range good {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "1x", "1h", "abc", "1e400", "99999999999e"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) accepted", in)
		}
	}
}

func FuzzSelect(f *testing.F) {
	for _, s := range []string{"name=x", "size>1g && !(use_pct<5) || origin=~'^a'", "((((", "a=b||c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r := sample()
		if err := r.Check(Options{Select: s}); err != nil {
			return
		}
		var b bytes.Buffer
		if err := r.Write(&b, Options{Select: s}); err != nil {
			t.Fatalf("Check accepted %q but Write failed: %v", s, err)
		}
	})
}
