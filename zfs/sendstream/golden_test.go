package sendstream

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func readStream(t testing.TB, file string) []byte {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(z)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func parseList(t *testing.T, line string) []uint64 {
	t.Helper()
	var out []uint64
	for _, f := range strings.Fields(line) {
		v, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	return out
}

// TestRealStreams parses the streams OpenZFS 2.3.2 wrote in the VM
// (TestZFSRealStreams -update) and checks their blocks against what
// reading the snapshot devices found there (.blocks files).
func TestRealStreams(t *testing.T) {
	files, _ := filepath.Glob("testdata/zfs-*.blocks")
	if len(files) < 7 {
		t.Fatalf("%d .blocks files in testdata, want the 7 variants", len(files))
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".blocks")
		t.Run(name, func(t *testing.T) {
			meta, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(string(meta), "\n")
			var kind string
			var bs, size uint64
			if _, err := fmtSscan(lines[1], &kind, &bs, &size); err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			diff, nonzero := parseList(t, lines[2]), parseList(t, lines[3])
			b := readStream(t, filepath.Join("testdata", name+".stream.gz"))
			s, err := ZvolChanges(bytes.NewReader(b))
			if err != nil {
				t.Fatal(err)
			}
			if s.Incremental() != (kind == "incremental") || s.BlockSize != uint32(bs) {
				t.Fatalf("incremental %v blocksize %d, want %s %d", s.Incremental(), s.BlockSize, kind, bs)
			}
			w, f := blockList(s.Written, bs, size), blockList(s.Freed, bs, size)
			if err := verifyBlocks(w, f, diff, nonzero, size/bs, kind == "full"); err != nil {
				t.Fatal(err)
			}
			if strings.Contains(name, "-e") && s.Records[drrWriteEmbedded] == 0 {
				t.Errorf("-e stream without DRR_WRITE_EMBEDDED")
			}
			if strings.HasSuffix(name, "-c") && s.Features&FeatureCompressed == 0 {
				t.Errorf("-c stream without the compressed feature")
			}
			if strings.Contains(name, "-w") && s.Features&FeatureRaw == 0 {
				t.Errorf("-w stream without the raw feature")
			}
			// A flipped payload byte breaks the checksum chain.
			c := bytes.Clone(b)
			c[len(c)/2] ^= 1
			if _, err := Parse(bytes.NewReader(c), Options{}); err == nil {
				t.Errorf("stream with a flipped byte at %d accepted", len(c)/2)
			}
			if _, err := Parse(bytes.NewReader(b[:len(b)-8]), Options{}); !errors.Is(err, ErrTruncated) {
				t.Errorf("cut stream: %v", err)
			}
		})
	}
	// send -p: a compound stream around the 16K zvol's increment.
	b := readStream(t, "testdata/zfs-2.3.2-v16k-incr-p.stream.gz")
	st, err := Parse(bytes.NewReader(b), Options{})
	if err != nil {
		t.Fatal(err)
	}
	plain, err := Parse(bytes.NewReader(readStream(t, "testdata/zfs-2.3.2-v16k-incr-plain.stream.gz")), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !st.Compound || len(st.Substreams) != 1 || !equalRanges(st.Substreams[0].Changed(), plain.Substreams[0].Changed()) {
		t.Fatalf("send -p: compound %v, %d substreams", st.Compound, len(st.Substreams))
	}
}

func equalRanges(a, b []Range) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// fmtSscan reads "<kind> volblocksize=N volsize=N".
func fmtSscan(line string, kind *string, bs, size *uint64) (int, error) {
	f := strings.Fields(line)
	if len(f) != 3 || !strings.HasPrefix(f[1], "volblocksize=") || !strings.HasPrefix(f[2], "volsize=") {
		return 0, errors.New("bad header line " + strconv.Quote(line))
	}
	*kind = f[0]
	var err error
	if *bs, err = strconv.ParseUint(strings.TrimPrefix(f[1], "volblocksize="), 10, 64); err != nil {
		return 0, err
	}
	*size, err = strconv.ParseUint(strings.TrimPrefix(f[2], "volsize="), 10, 64)
	return 3, err
}
