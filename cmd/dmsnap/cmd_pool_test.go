package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// cliEnv is an isolated dmsnap environment: state file, locks and an
// empty device directory in t.TempDir, so that no test sees the host's
// pools or devices.
type cliEnv struct {
	t   testing.TB
	dir string
}

func newCLIEnv(t testing.TB) *cliEnv {
	t.Helper()
	e := &cliEnv{t: t, dir: t.TempDir()}
	for _, d := range []string{"cfg", "lock", "dev"} {
		if err := os.Mkdir(filepath.Join(e.dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv(defaultPoolEnv, "")
	return e
}

func (e *cliEnv) path(name string) string { return filepath.Join(e.dir, name) }

// image creates a sparse file of sizeBytes.
func (e *cliEnv) image(name string, sizeBytes int64) string {
	e.t.Helper()
	p := e.path(name)
	f, err := os.Create(p)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := f.Truncate(sizeBytes); err != nil {
		e.t.Fatal(err)
	}
	f.Close()
	return p
}

// run runs dmsnap with the environment's directories.
func (e *cliEnv) run(args ...string) (code int, stdout, stderr string) {
	e.t.Helper()
	var out, errb bytes.Buffer
	full := append([]string{"dmsnap", "--config-dir", e.path("cfg"), "--lock-dir", e.path("lock"), "--dev-dir", e.path("dev")}, args...)
	code = run(context.Background(), full, &out, &errb)
	return code, out.String(), errb.String()
}

// mustRun runs dmsnap and fails the test unless it exits 0.
func (e *cliEnv) mustRun(args ...string) string {
	e.t.Helper()
	code, out, errs := e.run(args...)
	if code != 0 {
		e.t.Fatalf("dmsnap %s: exit %d: %s", strings.Join(args, " "), code, errs)
	}
	return out
}

// snapshotFiles returns a digest of every file under dir, to prove that
// a refused command changed nothing.
func snapshotFiles(t *testing.T, dir string) map[string][32]byte {
	t.Helper()
	out := map[string][32]byte{}
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() || strings.HasSuffix(p, ".lock") || strings.Contains(p, string(filepath.Separator)+"lock"+string(filepath.Separator)) {
			return err
		}
		sum, err := digestFile(p)
		if err != nil {
			return err
		}
		out[p] = sum
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// digestFile hashes a file's size and its data segments with their
// offsets, skipping holes (lseek SEEK_DATA/SEEK_HOLE): the test images are
// large and sparse, and reading their holes under TCG dominated the
// kernel tier's run time. A write into a hole, even of zeros, changes the
// digest, which is stricter than comparing contents.
func digestFile(path string) ([32]byte, error) {
	const seekData, seekHole = 3, 4
	f, err := os.Open(path)
	if err != nil {
		return [32]byte{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return [32]byte{}, err
	}
	h := sha256.New()
	fmt.Fprintf(h, "size %d\n", fi.Size())
	for off := int64(0); off < fi.Size(); {
		start, err := f.Seek(off, seekData)
		if err != nil {
			if errors.Is(err, syscall.ENXIO) {
				break // no data after off
			}
			// No SEEK_DATA here: hash everything.
			if _, err := f.Seek(0, io.SeekStart); err != nil {
				return [32]byte{}, err
			}
			h.Reset()
			if _, err := io.Copy(h, f); err != nil {
				return [32]byte{}, err
			}
			var sum [32]byte
			copy(sum[:], h.Sum(nil))
			return sum, nil
		}
		end, err := f.Seek(start, seekHole)
		if err != nil {
			return [32]byte{}, err
		}
		fmt.Fprintf(h, "data %d %d\n", start, end)
		if _, err := io.Copy(h, io.NewSectionReader(f, start, end-start)); err != nil {
			return [32]byte{}, err
		}
		off = end
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum, nil
}

func sameFiles(t *testing.T, before, after map[string][32]byte) {
	t.Helper()
	for p, h := range before {
		if a, ok := after[p]; !ok || a != h {
			t.Errorf("%s changed", p)
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			t.Errorf("%s appeared", p)
		}
	}
}

// TestPoolLifecycleFiles runs the metadata-only commands on image files:
//  1. pool create on two files with --default, pool ls and show --json;
//  2. lv create (no activation) in the default pool, rounded up;
//  3. lv extend +, lv rename, lv ls --json;
//  4. pool remove refuses while a volume exists, then --force wipes the
//     labels and forgets the pool; pool import of a wiped file fails.
func TestPoolLifecycleFiles(t *testing.T) {
	e := newCLIEnv(t)
	a := e.image("a.img", 64<<20)
	b := e.image("b.img", 64<<20)
	out := e.mustRun("pool", "create", "vg", a, b, "--default", "--extent-size", "1M")
	if !strings.Contains(out, "created pool vg") || !strings.Contains(out, "2 PVs") {
		t.Fatalf("pool create: %q", out)
	}
	out = e.mustRun("pool", "ls")
	if !strings.Contains(out, "vg ") || !strings.Contains(out, "*") {
		t.Errorf("pool ls:\n%s", out)
	}

	code, _, errs := e.run("lv", "create", "base", "--size", "1500K", "--no-activate")
	if code != 0 || !strings.Contains(errs, "rounded up to 2 MiB") {
		t.Fatalf("lv create: exit %d, stderr %q", code, errs)
	}
	e.mustRun("lv", "extend", "vg/base", "--size", "+3M", "--no-activate")
	e.mustRun("lv", "rename", "vg/base", "data", "--no-activate")

	var vols []jsonVolume
	if err := json.Unmarshal([]byte(e.mustRun("--json", "lv", "ls", "vg")), &vols); err != nil {
		t.Fatal(err)
	}
	if len(vols) != 1 || vols[0].Name != "data" || vols[0].SizeBytes != 5<<20 || vols[0].DMName != "vg-data" {
		t.Fatalf("lv ls: %+v", vols)
	}

	var jp jsonPool
	if err := json.Unmarshal([]byte(e.mustRun("--json", "pool", "show", "vg")), &jp); err != nil {
		t.Fatal(err)
	}
	if !jp.Default || len(jp.PVs) != 2 || jp.ExtentSizeBytes != 1<<20 || jp.FreeExtents != jp.TotalExtents-5 || jp.Seqno != 4 {
		t.Errorf("pool show: %+v", jp)
	}

	before := snapshotFiles(t, e.dir)
	code, _, errs = e.run("pool", "remove", "vg")
	if code != exitError || !strings.Contains(errs, "has 1 volumes (data)") {
		t.Errorf("pool remove with a volume: exit %d: %s", code, errs)
	}
	sameFiles(t, before, snapshotFiles(t, e.dir))

	e.mustRun("pool", "remove", "vg", "--force")
	if out := e.mustRun("pool", "ls"); strings.Contains(out, "vg ") {
		t.Errorf("pool still listed after remove:\n%s", out)
	}
	if code, _, errs := e.run("pool", "import", a); code != exitError || !strings.Contains(errs, "no dmsnap label") {
		t.Errorf("import of a wiped PV: exit %d: %s", code, errs)
	}
	// The wiped files can make a new pool without --force.
	e.mustRun("pool", "create", "vg2", a)
}

// TestPoolImportFiles: a pool's images are found again from the files
// alone after the state file is lost (a reboot of a machine whose /etc is
// not persistent), and import remembers them.
func TestPoolImportFiles(t *testing.T) {
	e := newCLIEnv(t)
	a := e.image("a.img", 32<<20)
	b := e.image("b.img", 32<<20)
	e.mustRun("pool", "create", "vg", a, b)
	e.mustRun("lv", "create", "vg/x", "--size", "8M", "--no-activate")
	if err := os.Remove(filepath.Join(e.path("cfg"), stateFileName)); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := e.run("lv", "ls", "vg"); code != exitError || !strings.Contains(errs, "no pool named vg") {
		t.Fatalf("lv ls without state: exit %d: %s", code, errs)
	}
	// b is still where the metadata last saw it, and its label proves it
	// is that PV: importing a finds b too.
	out := e.mustRun("pool", "import", a)
	if !strings.Contains(out, "imported pool vg") || !strings.Contains(out, "2 PVs") || strings.Contains(out, "MISSING") {
		t.Errorf("import of a, with b at its last-seen path: %q", out)
	}
	// Moved elsewhere, b is missing until it is named.
	if err := os.Remove(filepath.Join(e.path("cfg"), stateFileName)); err != nil {
		t.Fatal(err)
	}
	moved := e.path("moved-b.img")
	if err := os.Rename(b, moved); err != nil {
		t.Fatal(err)
	}
	b = moved
	out = e.mustRun("pool", "import", a)
	if !strings.Contains(out, "imported pool vg") || !strings.Contains(out, "1 PVs MISSING") {
		t.Errorf("import of one of two PVs: %q", out)
	}
	out = e.mustRun("pool", "import", b)
	if !strings.Contains(out, "2 PVs, 1 volumes") || strings.Contains(out, "MISSING") {
		t.Errorf("import of the second PV: %q", out)
	}
	if out := e.mustRun("lv", "ls", "vg"); !strings.Contains(out, "vg    x ") {
		t.Errorf("lv ls after import:\n%s", out)
	}
}

// TestPoolBadInput: each mistake gives one clear line, the right exit
// status, and changes no file.
func TestPoolBadInput(t *testing.T) {
	e := newCLIEnv(t)
	a := e.image("a.img", 16<<20)
	b := e.image("b.img", 16<<20)
	small := e.image("small.img", 1<<20)
	fs := e.image("ext4.img", 16<<20)
	// An ext4 superblock magic at byte 1080.
	f, err := os.OpenFile(fs, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{0x53, 0xEF}, 1080); err != nil {
		t.Fatal(err)
	}
	f.Close()
	e.mustRun("pool", "create", "vg", a, "--default")
	e.mustRun("lv", "create", "vg/base", "--size", "8M", "--no-activate")

	tests := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"pool name with slash", []string{"pool", "create", "a/b", b}, exitUsage, "invalid name"},
		{"pool name with space", []string{"pool", "create", "a b", b}, exitUsage, "invalid name"},
		{"pool name leading dash", []string{"pool", "create", "--", "-x", b}, exitUsage, "must not start with '-'"},
		{"pool name too long", []string{"pool", "create", strings.Repeat("x", 128), b}, exitUsage, "invalid name"},
		{"pool name clash", []string{"pool", "create", "vg", b}, exitError, "pool vg already exists"},
		{"no devices", []string{"pool", "create", "vg3"}, exitUsage, "needs DEVICE|FILE"},
		{"same device twice", []string{"pool", "create", "vg3", b, b}, exitUsage, "same device"},
		{"missing device", []string{"pool", "create", "vg3", e.path("nope.img")}, exitError, "no such file"},
		{"PV of another pool", []string{"pool", "create", "vg3", a}, exitError, "dmsnap PV of pool vg"},
		{"PV of another pool forced", []string{"pool", "create", "vg3", a, "--force"}, exitError, "is a PV of pool vg"},
		{"extend with own PV", []string{"pool", "extend", "vg", a}, exitError, "is a PV of pool vg"},
		{"filesystem signature", []string{"pool", "create", "vg3", fs}, exitError, "ext2/3/4 filesystem (use --force"},
		{"device too small", []string{"pool", "create", "vg3", small}, exitError, "too small"},
		{"bad extent size", []string{"pool", "create", "vg3", b, "--extent-size", "3M"}, exitUsage, "extent-size"},
		{"extent size unit", []string{"pool", "create", "vg3", b, "--extent-size", "4Q"}, exitUsage, "extent-size"},
		{"image exists", []string{"pool", "create", "vg3", "--file", b, "--size", "16M"}, exitError, "already exists"},
		{"image without size", []string{"pool", "create", "vg3", "--file", e.path("new.img")}, exitUsage, "--file needs --size"},
		{"image too small", []string{"pool", "create", "vg3", "--file", e.path("new.img"), "--size", "2M"}, exitUsage, "too small"},
		{"image size overflows", []string{"pool", "create", "vg3", "--file", e.path("new.img"), "--size", "36028797018980352s"}, exitUsage, `size "36028797018980352s": too large`},
		{"size without file", []string{"pool", "create", "vg3", b, "--size", "2G"}, exitUsage, "give --file too"},
		{"lv size zero", []string{"lv", "create", "vg/x", "--size", "0M", "--no-activate"}, exitUsage, "invalid size"},
		{"lv size bad unit", []string{"lv", "create", "vg/x", "--size", "10Q", "--no-activate"}, exitUsage, "invalid size"},
		{"lv size missing", []string{"lv", "create", "vg/x", "--no-activate"}, exitUsage, "--size is required"},
		{"lv name clash", []string{"lv", "create", "vg/base", "--size", "4M", "--no-activate"}, exitError, "already exists"},
		{"lv name with space", []string{"lv", "create", "vg/a b", "--size", "4M", "--no-activate"}, exitUsage, "invalid name"},
		{"lv name nested", []string{"lv", "create", "vg/a/b", "--size", "4M", "--no-activate"}, exitUsage, "invalid name"},
		{"lv no space", []string{"lv", "create", "vg/x", "--size", "1G", "--no-activate"}, exitError, "free"},
		{"lv unknown pool", []string{"lv", "create", "nope/x", "--size", "4M", "--no-activate"}, exitError, "no pool named nope"},
		{"lv extend shrink", []string{"lv", "extend", "vg/base", "--size", "4M", "--no-activate"}, exitUsage, "shrinking is not supported"},
		{"lv extend no space", []string{"lv", "extend", "vg/base", "--size", "+1G", "--no-activate"}, exitError, "free"},
		{"lv extend unknown", []string{"lv", "extend", "vg/nope", "--size", "+4M", "--no-activate"}, exitError, "not found"},
		{"lv rename clash", []string{"lv", "rename", "vg/base", "base", "--no-activate"}, exitError, "already exists"},
		{"lv rename other pool", []string{"lv", "rename", "vg/base", "other/x", "--no-activate"}, exitUsage, "another pool"},
		{"lv remove unknown", []string{"lv", "remove", "vg/nope"}, exitError, "not found"},
		{"config bad key", []string{"config", "set", "colour", "x"}, exitUsage, "unknown config key"},
		{"import unlabelled", []string{"pool", "import", b}, exitError, "no dmsnap label"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := snapshotFiles(t, e.dir)
			code, _, errs := e.run(tt.args...)
			if code != tt.code || !strings.Contains(errs, tt.msg) {
				t.Errorf("exit %d stderr %q; want exit %d containing %q", code, errs, tt.code, tt.msg)
			}
			if n := strings.Count(strings.TrimSpace(errs), "\n"); n > 0 {
				t.Errorf("error is not one line: %q", errs)
			}
			sameFiles(t, before, snapshotFiles(t, e.dir))
		})
	}
}

// TestDefaultPool: DMSNAP_POOL overrides the state file's default; with
// neither, a bare volume name is a usage error.
func TestDefaultPool(t *testing.T) {
	e := newCLIEnv(t)
	e.mustRun("pool", "create", "one", e.image("a.img", 32<<20))
	e.mustRun("pool", "create", "two", e.image("b.img", 32<<20))
	if code, _, errs := e.run("lv", "create", "x", "--size", "4M", "--no-activate"); code != exitUsage || !strings.Contains(errs, "no default pool") {
		t.Fatalf("without default: exit %d: %s", code, errs)
	}
	e.mustRun("config", "set", "default-pool", "one")
	e.mustRun("lv", "create", "x", "--size", "4M", "--no-activate")
	t.Setenv(defaultPoolEnv, "two")
	e.mustRun("lv", "create", "y", "--size", "4M", "--no-activate")
	t.Setenv(defaultPoolEnv, "")
	out := e.mustRun("lv", "ls")
	if !strings.Contains(out, "one   x ") || !strings.Contains(out, "two   y ") {
		t.Errorf("lv ls:\n%s", out)
	}
	st, err := loadState(&globalOptions{ConfigDir: e.path("cfg")})
	if err != nil || st.DefaultPool != "one" || len(st.Pools) != 2 {
		t.Errorf("state %+v, %v", st, err)
	}
}

// TestDigestFileSeesEveryChange: the hole-skipping digest must still see
// a changed byte in data and any write into a hole, zeros included.
func TestDigestFileSeesEveryChange(t *testing.T) {
	p := filepath.Join(t.TempDir(), "img")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(8 << 20); err != nil {
		t.Fatal(err)
	}
	digest := func() [32]byte {
		t.Helper()
		d, err := digestFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	prev := digest()
	for _, w := range []struct {
		off int64
		b   []byte
	}{{4096, []byte("data")}, {4097, []byte("X")}, {6 << 20, make([]byte, 4096)}} {
		if _, err := f.WriteAt(w.b, w.off); err != nil {
			t.Fatal(err)
		}
		if d := digest(); d == prev {
			t.Errorf("write of %d bytes at %d not seen", len(w.b), w.off)
		} else {
			prev = d
		}
	}
	if digest() != prev {
		t.Error("digest of an unchanged file changed")
	}
}
