package cow

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// goldenExpect is the expectation stored next to a golden COW image
// testdata/<kernel>-<scenario>.img.gz as testdata/<kernel>-<scenario>.json.
// Images are captured inside the VM from real kernels (dd of the COW
// device after the scenario, snapshot deactivated). Zero values mean "do
// not check".
type goldenExpect struct {
	// Kernel and Scenario describe the capture, for humans.
	Kernel   string `json:"kernel"`
	Scenario string `json:"scenario"`
	// SizeBytes is the COW device size. The image may be shorter (trailing
	// data chunks dropped); the rest reads as zeros.
	SizeBytes int64 `json:"size_bytes"`
	// ChunkSectors is the table's chunk size, passed as
	// ExpectChunkSectors.
	ChunkSectors uint32 `json:"chunk_sectors"`
	// Status is the kernel's "<allocated>/<total> <metadata>" for the
	// snapshot just before capture.
	Status string `json:"status"`
	// Count is the number of exceptions, if set.
	Count *int `json:"count"`
	// Exceptions lists [old, new] pairs in on-disk order, if set.
	Exceptions [][2]uint64 `json:"exceptions"`
	// Fresh says the store was never used (zero magic).
	Fresh bool `json:"fresh"`
	// Error names the sentinel Open must fail with: "bad_magic",
	// "unsupported_version", "invalidated", "bad_chunk_size", "truncated".
	Error string `json:"error"`
}

var goldenErrors = map[string]error{
	"bad_magic":           ErrBadMagic,
	"unsupported_version": ErrUnsupportedVersion,
	"invalidated":         ErrInvalidated,
	"bad_chunk_size":      ErrBadChunkSize,
	"truncated":           ErrTruncated,
}

// goldenNames returns the names of the golden images in testdata/.
func goldenNames(t testing.TB) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join("testdata", "*.img.gz"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range paths {
		names = append(names, strings.TrimSuffix(filepath.Base(p), ".img.gz"))
	}
	return names
}

// loadGolden returns the decompressed image testdata/name.img.gz and its
// expectation testdata/name.json.
func loadGolden(t testing.TB, name string) ([]byte, goldenExpect) {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name+".img.gz"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	img, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	js, err := os.ReadFile(filepath.Join("testdata", name+".json"))
	if err != nil {
		t.Fatalf("%s: expectation: %v", name, err)
	}
	var want goldenExpect
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&want); err != nil {
		t.Fatalf("%s.json: %v", name, err)
	}
	return img, want
}

func TestGolden(t *testing.T) {
	names := goldenNames(t)
	if len(names) == 0 {
		t.Skip("no golden images testdata/*.img.gz yet; they are captured in the VM")
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			img, want := loadGolden(t, name)
			size := want.SizeBytes
			if size == 0 {
				size = int64(len(img))
			}
			if size < int64(len(img)) {
				t.Fatalf("size_bytes %d is below the image length %d", size, len(img))
			}
			d := newMemDev(size)
			if _, err := d.WriteAt(img, 0); err != nil {
				t.Fatal(err)
			}
			s, err := Decoder{ExpectChunkSectors: want.ChunkSectors}.Open(d, size)
			if want.Error != "" {
				sentinel, ok := goldenErrors[want.Error]
				if !ok {
					t.Fatalf("unknown error name %q", want.Error)
				}
				if !errors.Is(err, sentinel) {
					t.Fatalf("Open: %v, want %v", err, sentinel)
				}
				return
			}
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if s.Fresh() != want.Fresh {
				t.Errorf("Fresh = %v, want %v", s.Fresh(), want.Fresh)
			}
			if want.Status != "" && s.Usage().String() != want.Status {
				t.Errorf("Usage = %q, kernel said %q", s.Usage(), want.Status)
			}
			if want.Count != nil && s.Len() != *want.Count {
				t.Errorf("Len = %d, want %d", s.Len(), *want.Count)
			}
			if want.Exceptions != nil {
				var got [][2]uint64
				for _, e := range s.Exceptions() {
					got = append(got, [2]uint64{uint64(e.Old), uint64(e.New)})
				}
				if !slices.Equal(got, want.Exceptions) {
					t.Errorf("Exceptions = %v, want %v", got, want.Exceptions)
				}
			}
			if s.Fresh() {
				return
			}
			// Kernel-written metadata re-encodes byte for byte.
			enc := d.clone()
			if err := Encode(enc, s); err != nil {
				t.Fatal(err)
			}
			if !enc.equal(d) {
				t.Error("Encode of the decoded store differs from the kernel's bytes")
			}
		})
	}
}
