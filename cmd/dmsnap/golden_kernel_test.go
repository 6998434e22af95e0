package main

import (
	"crypto/rand"
	"encoding/hex"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/dmsnap/dmsnap/dm"
	"github.com/dmsnap/dmsnap/internal/testutil"
	"github.com/dmsnap/dmsnap/lvm"
)

var updateGolden = flag.Bool("update-golden", false, "rewrite testdata/golden/*.golden from the kernel tier (inside the VM only)")

// goldenVariable matches what truly varies between runs: UUIDs, device
// numbers, loop and dm device minors, and times. normaliseGolden keeps
// the length of each match, so column widths in human output still show.
var goldenVariable = []*regexp.Regexp{
	regexp.MustCompile(`\b[0-9a-f]{32}\b`),    // pool, PV and volume UUIDs
	regexp.MustCompile(`\b\d{1,3}:\d{1,7}\b`), // major:minor
	regexp.MustCompile(`/dev/(loop|dm-)\d+`),
	regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)`),
}

// normaliseGolden replaces the pool name, the image directory and every
// goldenVariable match by placeholders of the same length.
func normaliseGolden(s, pool, dir string) string {
	s = strings.ReplaceAll(s, dir, "/tmp/golden-XXXXXXXX")
	s = strings.ReplaceAll(s, pool, "tPOOLNAME") // "t" and 8 hex digits
	for _, re := range goldenVariable {
		s = re.ReplaceAllStringFunc(s, func(m string) string {
			return regexp.MustCompile(`[0-9A-Za-z]`).ReplaceAllString(m, "N")
		})
	}
	return s
}

// TestGoldenOutputKernel fixes the human and JSON output of the listing
// commands on real devices, so that refactoring the pool code cannot
// change a byte of it.
func TestGoldenOutputKernel(t *testing.T) {
	testutil.RequireKernel(t)
	e := newCLIEnv(t)
	var rnd [4]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		t.Fatal(err)
	}
	// A directory name of fixed length keeps the columns of the PV paths stable.
	dir := "/tmp/golden-" + hex.EncodeToString(rnd[:])
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	img := func(name string) string {
		p := filepath.Join(dir, name)
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Truncate(48 << 20); err != nil {
			t.Fatal(err)
		}
		f.Close()
		return p
	}
	pool := "t" + strings.TrimPrefix(testutil.UniqueName(t), testutil.DMNamePrefix)
	e.mustRun("pool", "create", pool, img("a.img"), img("b.img"), "--extent-size", "1M")
	t.Cleanup(func() {
		if code, _, errs := e.run("deactivate", pool); code != 0 {
			t.Errorf("cleanup: deactivate %s: %s", pool, errs)
		}
	})
	e.mustRun("lv", "create", pool+"/base", "--size", "16M")
	e.mustRun("lv", "create", pool+"/data", "--size", "8M")
	e.mustRun("create", pool+"/base", "snap", "--cow", "8M", "--chunksize", "4K")
	e.mustRun("create", pool+"/base", "snap2", "--cow", "4M")
	fill(t, dm.DevicePath(lvm.DMName(pool, "snap", lvm.LayerNone)), 1<<20)

	cases := []struct {
		name string
		args []string
	}{
		{"ls", []string{"ls", pool}},
		{"ls-columns", []string{"ls", pool, "-o", "name,origin,uuid,allocated,total,metadata"}},
		{"status", []string{"status", pool + "/snap"}},
		{"pool-show", []string{"pool", "show", pool}},
		{"pool-ls", []string{"pool", "ls"}},
		{"lv-ls", []string{"lv", "ls", pool}},
	}
	for _, c := range cases {
		for _, form := range []string{"human", "json"} {
			args := c.args
			if form == "json" {
				args = append([]string{"--json"}, args...)
			}
			code, out, errs := e.run(args...)
			if code != 0 {
				t.Errorf("dmsnap %s: exit %d: %s", strings.Join(args, " "), code, errs)
				continue
			}
			got := normaliseGolden(out, pool, dir)
			file := filepath.Join("testdata", "golden", c.name+"."+form+".golden")
			if *updateGolden {
				if !testutil.InVM() {
					t.Fatal("-update-golden only inside the test VM")
				}
				if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			want, err := os.ReadFile(file)
			if err != nil {
				t.Errorf("%s (run with -update-golden in the VM to create it): %v", file, err)
				t.Logf("output of dmsnap %s:\n%s", strings.Join(args, " "), got)
				continue
			}
			if got != string(want) {
				t.Errorf("dmsnap %s: output differs from %s\n--- got\n%s--- want\n%s", strings.Join(args, " "), file, got, want)
			}
		}
	}
}
