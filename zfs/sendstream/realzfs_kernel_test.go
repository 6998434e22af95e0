//go:build linux

package sendstream

import (
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dmsnap/dmsnap/internal/testutil"
)

var update = flag.Bool("update", false, "write testdata/zfs-2.3.2-*.stream.gz and their .blocks captured from the real zfs (inside the VM only)")

// requireZFS skips unless the test runs inside the VM with the zfs module
// loaded; in the ZFS tier (DMSNAP_ZFS_TIER=1, make test-zfs) a missing
// module or userland fails.
func requireZFS(t *testing.T) {
	t.Helper()
	testutil.RequireKernel(t)
	miss := t.Skipf
	if os.Getenv("DMSNAP_ZFS_TIER") == "1" {
		miss = t.Fatalf
	}
	if _, err := os.Stat("/dev/zfs"); err != nil {
		miss("zfs module not loaded: %v", err)
	}
	for _, b := range []string{"zfs", "zpool", "zvol_id", "blkdiscard"} {
		if _, err := exec.LookPath(b); err != nil {
			miss("%s not in PATH (vmrun --tools zfs puts OpenZFS there)", b)
		}
	}
}

func run(t *testing.T, stdin []byte, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(name, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, errb.String())
	}
	return out.Bytes()
}

// zvolDevice waits for the /dev/zdN of dataset (no udev in the VM: no
// /dev/zvol links; zvol_id maps a node to its name).
func zvolDevice(t *testing.T, dataset string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		nodes, _ := filepath.Glob("/dev/zd*")
		for _, n := range nodes {
			if strings.ContainsRune(strings.TrimPrefix(n, "/dev/zd"), 'p') {
				continue
			}
			out, err := exec.Command("zvol_id", n).Output()
			if err == nil && strings.TrimSpace(string(out)) == dataset {
				return n
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no /dev/zd* for %s after 30 s", dataset)
	return ""
}

// op is one scripted change of a zvol.
type op struct {
	kind     string // "data": random head + zeros; "tiny": 16 random bytes + zeros (embeddable); "zero": zeros; "punch": discard
	off, len int64
}

func apply(t *testing.T, dev string, bs int64, ops []op) {
	t.Helper()
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, o := range ops {
		buf := make([]byte, o.len)
		switch o.kind {
		case "data":
			// 2 KiB of random data at the start of every block
			// (compressible, so -c differs from plain; small testdata).
			for pos := o.off; pos < o.off+o.len; pos = (pos/bs + 1) * bs {
				end := min(pos+2048, o.off+o.len, (pos/bs+1)*bs)
				_, _ = rand.Read(buf[pos-o.off : end-o.off])
			}
		case "tiny":
			_, _ = rand.Read(buf[:16])
		case "zero":
		case "punch":
			// A discard (zvols support no FALLOC_FL_PUNCH_HOLE:
			// they have no write-zeroes).
			if err := f.Sync(); err != nil {
				t.Fatal(err)
			}
			run(t, nil, "blkdiscard", "-o", strconv.FormatInt(o.off, 10), "-l", strconv.FormatInt(o.len, 10), dev)
			continue
		}
		if _, err := f.WriteAt(buf, o.off); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
}

// blocks returns the indexes of the blocks of bs bytes that differ
// between devices a and b (b == "" compares with zeros).
func blocks(t *testing.T, a, b string, bs int64) []uint64 {
	t.Helper()
	da, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	db := make([]byte, len(da))
	if b != "" {
		if db, err = os.ReadFile(b); err != nil {
			t.Fatal(err)
		}
	}
	if len(da) != len(db) {
		t.Fatalf("%s is %d bytes, %s %d", a, len(da), b, len(db))
	}
	var out []uint64
	for off := int64(0); off < int64(len(da)); off += bs {
		if !bytes.Equal(da[off:off+bs], db[off:off+bs]) {
			out = append(out, uint64(off/bs))
		}
	}
	return out
}

// TestZFSRealStreams checks the parser against streams the real zfs
// writes:
//
//  1. a pool on a loop device; zvols of volblocksize 16K and 128K
//     (compression=lz4, snapdev=visible), 8 MiB each;
//  2. scripted writes (whole and partial blocks, an embeddable
//     almost-empty block), snapshot @s1;
//  3. overwrites, zero writes (holes under compression), discards and
//     new writes, snapshot @s2;
//  4. `zfs send -i @s1 @s2` plain, -c, -e, -L, -c -e -L (and -w of an
//     encrypted zvol): the DRR_WRITE/DRR_FREE ranges of object 1,
//     widened to the volblocksize and clipped at volsize, must be
//     exactly the blocks in which the snapshot devices @s1 and @s2
//     differ;
//  5. `zfs send @s1`: the DRR_WRITE ranges are exactly the non-zero
//     blocks of @s1.
//
// With -update the 16K zvol's streams go to testdata (gzip) with the
// expected block lists, for the host tests and the fuzzer's seeds.
func TestZFSRealStreams(t *testing.T) {
	requireZFS(t)
	pool := "dmsnapss" + strconv.Itoa(os.Getpid()%10000)
	dev, _ := testutil.ScratchLoop(t, 512<<20)
	run(t, nil, "zpool", "create", "-f", "-o", "cachefile=none", "-m", "none", pool, dev)
	t.Cleanup(func() {
		if out, err := exec.Command("zpool", "destroy", "-f", pool).CombinedOutput(); err != nil {
			t.Errorf("zpool destroy: %v: %s", err, out)
		}
	})
	const volsize = 8 << 20
	first := func(bs int64) []op {
		return []op{
			{"data", 0, 3 * bs}, {"data", 10*bs + 4096, 4096}, {"data", 20 * bs, 4 * bs},
			{"tiny", 30 * bs, bs}, {"data", 60 * bs, bs},
		}
	}
	second := func(bs int64) []op {
		return []op{
			{"data", bs, bs}, {"data", 21*bs + 1024, 1024}, {"zero", 2 * bs, bs},
			{"punch", 22 * bs, 2 * bs}, {"data", 40 * bs, 2 * bs}, {"tiny", 50 * bs, bs},
			{"zero", 45 * bs, bs}, // zeros over a hole: no change
		}
	}
	variants := []struct {
		name  string
		flags []string
	}{{"plain", nil}, {"c", []string{"-c"}}, {"e", []string{"-e"}}, {"L", []string{"-L"}}, {"ceL", []string{"-c", "-e", "-L"}}}

	type vol struct {
		name    string
		bs      int64
		props   []string
		stdin   []byte
		raw     bool
		capture bool
	}
	vols := []vol{
		{name: "v16k", bs: 16 << 10, capture: true},
		{name: "v128k", bs: 128 << 10},
	}
	key := bytes.Repeat([]byte("k"), 16)
	if out, err := exec.Command("zpool", "get", "-Hpo", "value", "feature@encryption", pool).Output(); err == nil && strings.TrimSpace(string(out)) != "disabled" {
		vols = append(vols, vol{name: "venc", bs: 16 << 10, raw: true, capture: true, stdin: key,
			props: []string{"-o", "encryption=on", "-o", "keyformat=passphrase", "-o", "keylocation=prompt"}})
	} else {
		t.Logf("pool has no encryption feature: no -w stream")
	}
	for _, v := range vols {
		t.Run(v.name, func(t *testing.T) {
			ds := pool + "/" + v.name
			args := append([]string{"create", "-V", strconv.Itoa(volsize), "-o", "volblocksize=" + strconv.FormatInt(v.bs, 10),
				"-o", "compression=lz4", "-o", "snapdev=visible"}, v.props...)
			run(t, v.stdin, "zfs", append(args, ds)...)
			d := zvolDevice(t, ds)
			apply(t, d, v.bs, first(v.bs))
			run(t, nil, "zfs", "snapshot", ds+"@s1")
			apply(t, d, v.bs, second(v.bs))
			run(t, nil, "zfs", "snapshot", ds+"@s2")
			d1, d2 := zvolDevice(t, ds+"@s1"), zvolDevice(t, ds+"@s2")
			diff := blocks(t, d1, d2, v.bs)
			nz1, nz2 := blocks(t, d1, "", v.bs), blocks(t, d2, "", v.bs)
			t.Logf("%s: blocks differing @s1..@s2 %v, non-zero in @s1 %v, in @s2 %v", v.name, diff, nz1, nz2)

			vs := variants
			if v.raw {
				vs = append(vs[:0:0], struct {
					name  string
					flags []string
				}{"w", []string{"-w"}})
			}
			for _, vr := range vs {
				stream := run(t, nil, "zfs", append(append([]string{"send"}, vr.flags...), "-i", ds+"@s1", ds+"@s2")...)
				name := fmt.Sprintf("zfs-2.3.2-%s-incr-%s", v.name, vr.name)
				checkStream(t, name, stream, true, v.bs, volsize, diff, nz2)
				if v.capture && *update {
					save(t, name, stream, v.bs, volsize, true, diff, nz2)
				}
			}
			fullFlags := []string{}
			if v.raw {
				fullFlags = []string{"-w"}
			}
			stream := run(t, nil, "zfs", append(append([]string{"send"}, fullFlags...), ds+"@s1")...)
			name := fmt.Sprintf("zfs-2.3.2-%s-full", v.name)
			checkStream(t, name, stream, false, v.bs, volsize, nz1, nz1)
			if v.capture && *update {
				save(t, name, stream, v.bs, volsize, false, nz1, nz1)
			}
		})
	}
	// A compound stream (-p: properties nvlist, then the substream, then
	// the conclusion record) of the 16K zvol's increment.
	ds := pool + "/v16k"
	stream := run(t, nil, "zfs", "send", "-p", "-i", ds+"@s1", ds+"@s2")
	st, err := Parse(bytes.NewReader(stream), Options{})
	if err != nil {
		t.Fatalf("send -p: %v", err)
	}
	if !st.Compound || len(st.Substreams) != 1 || st.Substreams[0].ToName != ds+"@s2" {
		t.Fatalf("send -p: compound %v, %d substreams", st.Compound, len(st.Substreams))
	}
	if *update {
		save(t, "zfs-2.3.2-v16k-incr-p", stream, 16<<10, volsize, true, nil, nil)
	}
}

// checkStream parses a real stream and checks the blocks it names
// against the devices ([verifyBlocks]).
func checkStream(t *testing.T, name string, stream []byte, incremental bool, bs, volsize int64, diff, nonzero []uint64) {
	t.Helper()
	s, err := ZvolChanges(bytes.NewReader(stream))
	if err != nil {
		t.Errorf("%s (%d bytes): %v", name, len(stream), err)
		return
	}
	if s.Incremental() != incremental {
		t.Errorf("%s: incremental %v, want %v", name, s.Incremental(), incremental)
	}
	t.Logf("%s: %d bytes, records %v, written %v, freed %v, blocksize %d", name, len(stream), s.Records, s.Written, s.Freed, s.BlockSize)
	w, f := blockList(s.Written, uint64(bs), uint64(volsize)), blockList(s.Freed, uint64(bs), uint64(volsize))
	if err := verifyBlocks(w, f, diff, nonzero, uint64(volsize/bs), !incremental); err != nil {
		t.Errorf("%s: %v", name, err)
	}
}

// save writes the stream gzip-compressed and, for the host tests, what
// the devices said: "<kind> volblocksize=N volsize=N", the blocks that
// differ, the non-zero blocks of the "to" snapshot.
func save(t *testing.T, name string, stream []byte, bs, volsize int64, incremental bool, diff, nonzero []uint64) {
	t.Helper()
	var z bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&z, gzip.BestCompression)
	_, _ = zw.Write(stream)
	_ = zw.Close()
	if err := os.WriteFile(filepath.Join("testdata", name+".stream.gz"), z.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if diff == nil {
		return
	}
	kind := "full"
	if incremental {
		kind = "incremental"
	}
	meta := fmt.Sprintf("# from reading the snapshot devices in the VM: kind, changed blocks, non-zero blocks of the \"to\" snapshot\n%s volblocksize=%d volsize=%d\n%s\n%s\n",
		kind, bs, volsize, strings.Trim(fmt.Sprint(diff), "[]"), strings.Trim(fmt.Sprint(nonzero), "[]"))
	if err := os.WriteFile(filepath.Join("testdata", name+".blocks"), []byte(meta), 0o644); err != nil {
		t.Fatal(err)
	}
}
