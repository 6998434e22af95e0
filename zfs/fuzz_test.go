package zfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func seedFiles(f *testing.F, glob string) {
	files, err := filepath.Glob(filepath.Join("testdata", glob))
	if err != nil || len(files) == 0 {
		f.Fatalf("no seeds for %s", glob)
	}
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

func formatList(pts []Point) string {
	var b strings.Builder
	for _, p := range pts {
		fmt.Fprintf(&b, "%s\t%d\t%d\t%d\t%s\n", p.Name, p.GUID, p.CreateTXG, p.Creation.Unix(), p.Kind)
	}
	return b.String()
}

// FuzzParseList: errors are ErrSyntax or ErrInvalidName with no result; a
// success is sorted by createtxg, belongs to the dataset, and round-trips
// through the -Hp format.
func FuzzParseList(f *testing.F) {
	seedFiles(f, "zfs-*-list-Hp-*.txt")
	f.Add([]byte("tank/vol@a\t1\t1\t0\tsnapshot\ntank/vol#a\t1\t1\t0\tbookmark\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, ds := range []string{"tank/vol", "backup/vol"} {
			pts, err := ParseList(ds, b)
			if err != nil {
				if pts != nil || (!errors.Is(err, ErrSyntax) && !errors.Is(err, ErrInvalidName)) {
					t.Fatalf("err %v with %d points", err, len(pts))
				}
				continue
			}
			for i, p := range pts {
				if p.Dataset() != ds || p.GUID == 0 || p.CreateTXG == 0 {
					t.Fatalf("bad point %+v", p)
				}
				if i > 0 && comparePoints(pts[i-1], p) > 0 {
					t.Fatalf("not sorted at %d", i)
				}
			}
			again, err := ParseList(ds, []byte(formatList(pts)))
			if err != nil || !slices.Equal(again, pts) {
				t.Fatalf("round trip: %v", err)
			}
		}
	})
}

// FuzzParseVersion: errors are ErrVersion or ErrNoModule; a success
// re-renders to text that parses to the same pair, and the guard's
// warning is empty exactly when the verdict is CompatOK.
func FuzzParseVersion(f *testing.F) {
	seedFiles(f, "zfs-*-version*")
	seedFiles(f, "zfs-*-V-*")
	f.Fuzz(func(t *testing.T, b []byte) {
		vs, err := ParseVersion(b)
		if err != nil {
			if !errors.Is(err, ErrVersion) && !errors.Is(err, ErrNoModule) {
				t.Fatalf("err %v", err)
			}
			if vs != (Versions{}) {
				t.Fatalf("result with error")
			}
			return
		}
		text := "zfs-" + vs.Userland.String() + "\nzfs-kmod-" + vs.Kernel.String() + "\n"
		again, err := ParseVersion([]byte(text))
		if err != nil || again != vs {
			t.Fatalf("round trip %q: %+v %v", text, again, err)
		}
		g := CheckVersions(vs)
		if (g.Compat == CompatOK) != (g.Warning == "") || (g.Compat != CompatKnownBad && !g.SendIncrementalPackage) {
			t.Fatalf("guard %+v", g)
		}
	})
}

// FuzzParseSendEstimate: either a size or an ErrSyntax error.
func FuzzParseSendEstimate(f *testing.F) {
	seedFiles(f, "zfs-*-send-nvP-*.txt")
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := ParseSendEstimate(b)
		if err != nil && (n != 0 || !errors.Is(err, ErrSyntax)) {
			t.Fatalf("%d %v", n, err)
		}
		if err != nil {
			return
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "size\t"); ok {
				if m, perr := strconv.ParseUint(strings.TrimSpace(v), 10, 64); perr == nil && m == n {
					return
				}
			}
		}
		t.Fatalf("size %d from nowhere in %q", n, b)
	})
}
