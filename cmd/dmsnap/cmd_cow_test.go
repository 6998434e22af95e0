package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dmsnap/dmsnap/cow"
)

// runCLI runs dmsnap with args and returns its exit status and output.
func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), append([]string{"dmsnap"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

// buildStore writes a store with chunks of chunkSectors to a file of
// sizeBytes in t.TempDir, one exception per old chunk in order.
func buildStore(t *testing.T, sizeBytes int64, chunkSectors uint32, olds ...cow.Chunk) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "cow.img")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(sizeBytes); err != nil {
		t.Fatal(err)
	}
	w, err := cow.Create(f, sizeBytes, chunkSectors)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range olds {
		if _, err := w.Add(o, nil); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

// TestCowInspectDiffVerify: a store built by the encoder with chunk 8 and
// exceptions for origin chunks 100, 5, 6, 7, 20 (in that order):
//   - inspect --json reports the header, counts, the kernel-style status
//     and the first 2 exceptions in on-disk order;
//   - diff --json merges 5-7 into one extent and reports byte offsets;
//   - the bitmap file sets exactly bits 5, 6, 7, 20, 100, LSB first;
//   - verify exits 0, and 1 with --chunk-size 16 or a too small origin.
func TestCowInspectDiffVerify(t *testing.T) {
	path := buildStore(t, 2<<20, 8, 100, 5, 6, 7, 20)

	code, out, errOut := runCLI(t, "cow", "inspect", "--json", "--limit", "2", path)
	if code != 0 {
		t.Fatalf("inspect: exit %d: %s", code, errOut)
	}
	var in jsonCowInspect
	if err := json.Unmarshal([]byte(out), &in); err != nil {
		t.Fatal(err)
	}
	wantFirst := []jsonException{{100, 2}, {5, 3}}
	if in.State != "valid" || in.Kind != "file" || in.Header.Magic != cow.Magic || in.ChunkSectors != 8 || in.Exceptions != 5 ||
		in.MetadataAreas != 1 || in.RecordsPerArea != 256 || in.NextFreeChunk != 7 || in.Usage.Status != "56/4096 16" ||
		!slices.Equal(in.First, wantFirst) || in.Live {
		t.Fatalf("inspect: %s", out)
	}

	code, out, _ = runCLI(t, "cow", "inspect", path)
	if code != 0 || !strings.Contains(out, "fill:        56/4096 16 ") || !strings.Contains(out, "  100 -> 2\n") {
		t.Fatalf("inspect text: exit %d:\n%s", code, out)
	}

	bm := filepath.Join(t.TempDir(), "changed.bits")
	code, out, errOut = runCLI(t, "diff", "--json", "--origin-size", "1M", "--bitmap", bm, path)
	if code != 0 {
		t.Fatalf("diff: exit %d: %s", code, errOut)
	}
	var d jsonDiff
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		t.Fatal(err)
	}
	wantX := []jsonDiffExtent{{5 * 4096, 3 * 4096, 5, 3}, {20 * 4096, 4096, 20, 1}, {100 * 4096, 4096, 100, 1}}
	if !slices.Equal(d.Extents, wantX) || d.ChangedChunks != 5 || d.ChangedBytes != 5*4096 || d.Bitmap == nil || d.Bitmap.Bits != 256 {
		t.Fatalf("diff: %s", out)
	}
	bits, err := os.ReadFile(bm)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]byte, 32)
	want[0] = 1<<5 | 1<<6 | 1<<7
	want[2] = 1 << 4  // chunk 20
	want[12] = 1 << 4 // chunk 100
	if !bytes.Equal(bits, want) {
		t.Fatalf("bitmap % x, want % x", bits, want)
	}

	code, out, _ = runCLI(t, "diff", path)
	if code != 0 || !strings.Contains(out, "5 changed chunks") || !hasRow(out, "20480", "12288", "5-7") {
		t.Fatalf("diff text: exit %d:\n%s", code, out)
	}

	if code, out, _ = runCLI(t, "cow", "verify", path); code != 0 || !strings.Contains(out, "ok: 5 exceptions") {
		t.Fatalf("verify: exit %d: %s", code, out)
	}
	if code, _, errOut = runCLI(t, "cow", "verify", "--chunk-size", "16", path); code != 1 || !strings.Contains(errOut, "chunk size mismatch") {
		t.Fatalf("verify --chunk-size 16: exit %d: %s", code, errOut)
	}
	code, out, _ = runCLI(t, "cow", "verify", "--json", "--origin-size", "400K", path)
	var v jsonCowVerify
	if err := json.Unmarshal([]byte(out), &v); err != nil || code != 1 || v.OK || v.Problem != "out_of_range" {
		t.Fatalf("verify of a store past its origin: exit %d: %s (%v)", code, out, err)
	}
}

// TestCowBadStores: every kind of bad input gets a precise message and the
// right exit status.
func TestCowBadStores(t *testing.T) {
	dir := t.TempDir()
	notStore := filepath.Join(dir, "text")
	if err := os.WriteFile(notStore, bytes.Repeat([]byte("hello world\n"), 1000), 0o644); err != nil {
		t.Fatal(err)
	}
	invalid := buildStore(t, 1<<20, 8, 1, 2)
	f, err := os.OpenFile(invalid, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := cow.Invalidate(f, 8); err != nil {
		t.Fatal(err)
	}
	f.Close()
	dup := buildStore(t, 1<<20, 8, 9, 3, 9)
	short := filepath.Join(dir, "short")
	if err := os.WriteFile(short, []byte("SnA"), 0o644); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"cow", "verify", notStore}, 1, "not a dm-snapshot persistent store: bad magic 0x6c6c6568"},
		{[]string{"diff", notStore}, 1, "not a dm-snapshot persistent store: bad magic"},
		{[]string{"cow", "inspect", notStore}, 1, "not a dm-snapshot persistent store: bad magic"},
		{[]string{"cow", "verify", short}, 1, "not a dm-snapshot persistent store"},
		{[]string{"cow", "verify", filepath.Join(dir, "missing")}, 1, "no such file or directory"},
		{[]string{"cow", "verify", dir}, 1, "not a block device or a regular file"},
		{[]string{"cow", "verify", invalid}, 1, "snapshot invalidated"},
		{[]string{"diff", invalid}, 1, "changes since the snapshot are unknown"},
		{[]string{"cow", "verify", dup}, 1, "area 0 record 2 (old 9 new 4): duplicate old chunk"},
		{[]string{"cow", "verify"}, 2, "exactly one DEVICE|FILE"},
		{[]string{"diff", "a", "b"}, 2, "exactly one DEVICE|FILE"},
		{[]string{"cow", "inspect", "--limit", "-2", invalid}, 2, "--limit -2"},
		{[]string{"cow", "verify", "--chunk-size", "3", invalid}, 2, "--chunk-size 3"},
		{[]string{"diff", "--bitmap", filepath.Join(dir, "b"), invalid}, 2, "--bitmap needs --origin-size"},
		{[]string{"diff", "--origin-size", "lots", invalid}, 2, "--origin-size"},
		{[]string{"cow", "inspect", "--nope", invalid}, 2, ""},
	} {
		code, _, errOut := runCLI(t, tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.msg) {
			t.Errorf("%q: exit %d, stderr %q; want %d with %q", tc.args, code, errOut, tc.code, tc.msg)
		}
	}

	// An invalidated store can still be inspected.
	code, out, _ := runCLI(t, "cow", "inspect", "--json", invalid)
	var in jsonCowInspect
	if err := json.Unmarshal([]byte(out), &in); err != nil || code != 0 || in.State != "invalidated" || in.Header.Valid != 0 {
		t.Fatalf("inspect of an invalidated store: exit %d: %s", code, out)
	}
}

// TestCowFreshStore: a zeroed COW is fresh and valid, but diff will not
// call a zeroed file no snapshot uses unchanged: it may be no COW at all.
func TestCowFreshStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fresh")
	if err := os.WriteFile(path, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, _ := runCLI(t, "cow", "verify", path); code != 0 || !strings.Contains(out, "fresh") {
		t.Fatalf("verify: exit %d: %s", code, out)
	}
	code, out, _ := runCLI(t, "cow", "inspect", "--json", "--chunk-size", "8", path)
	var in jsonCowInspect
	if err := json.Unmarshal([]byte(out), &in); err != nil || code != 0 || in.State != "fresh" || in.Usage.Status != "16/2048 16" {
		t.Fatalf("inspect: exit %d: %s", code, out)
	}
	if code, _, errOut := runCLI(t, "diff", path); code != 1 || !strings.Contains(errOut, "no snapshot magic, its first 4 KiB are zeros, and no snapshot uses it") {
		t.Fatalf("diff: exit %d: %s", code, errOut)
	}
}

// TestCowGoldenImages runs inspect, verify and diff on the images captured
// from real kernels (cow/testdata): the CLI reports the kernel's status
// and exactly the recorded exceptions, merged into extents.
func TestCowGoldenImages(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join("..", "..", "cow", "testdata", "*.json"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no golden images: %v", err)
	}
	for _, jp := range paths {
		name := strings.TrimSuffix(filepath.Base(jp), ".json")
		t.Run(name, func(t *testing.T) {
			var want struct {
				SizeBytes    int64       `json:"size_bytes"`
				ChunkSectors uint32      `json:"chunk_sectors"`
				Status       string      `json:"status"`
				Count        *int        `json:"count"`
				Exceptions   [][2]uint64 `json:"exceptions"`
				Error        string      `json:"error"`
			}
			js, err := os.ReadFile(jp)
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(js, &want); err != nil {
				t.Fatal(err)
			}
			img := expandGolden(t, strings.TrimSuffix(jp, ".json")+".img.gz", want.SizeBytes)
			code, out, errOut := runCLI(t, "cow", "verify", "--json", img)
			var v jsonCowVerify
			if err := json.Unmarshal([]byte(out), &v); err != nil {
				t.Fatalf("verify: %v: %s %s", err, out, errOut)
			}
			if want.Error != "" {
				if code != 1 || v.Problem != want.Error {
					t.Fatalf("verify: exit %d: %s; want problem %q", code, out, want.Error)
				}
				return
			}
			if code != 0 || v.Status != want.Status || v.Exceptions != *want.Count {
				t.Fatalf("verify: exit %d: %s; want status %q, %d exceptions", code, out, want.Status, *want.Count)
			}
			code, out, _ = runCLI(t, "diff", "--json", "--origin-size", "8M", img)
			var d jsonDiff
			if err := json.Unmarshal([]byte(out), &d); err != nil || code != 0 {
				t.Fatalf("diff: exit %d: %s", code, out)
			}
			var olds []uint64
			for _, e := range want.Exceptions {
				olds = append(olds, e[0])
			}
			slices.Sort(olds)
			var got []uint64
			for i, x := range d.Extents {
				if i > 0 && d.Extents[i-1].StartChunk+d.Extents[i-1].Chunks == x.StartChunk {
					t.Errorf("extents %d and %d are adjacent but not merged", i-1, i)
				}
				if x.OffsetBytes != x.StartChunk*d.ChunkBytes || x.LengthBytes != x.Chunks*d.ChunkBytes {
					t.Errorf("extent %+v: bytes do not match chunks", x)
				}
				for c := range x.Chunks {
					got = append(got, x.StartChunk+c)
				}
			}
			if !slices.Equal(got, olds) {
				t.Fatalf("diff chunks %v, want %v", got, olds)
			}
		})
	}
}

// expandGolden decompresses a golden image into a file of sizeBytes.
func expandGolden(t *testing.T, gz string, sizeBytes int64) string {
	t.Helper()
	f, err := os.Open(gz)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "img")
	out, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if _, err := io.Copy(out, zr); err != nil {
		t.Fatal(err)
	}
	if err := out.Truncate(sizeBytes); err != nil {
		t.Fatal(err)
	}
	return path
}

// hasRow reports whether a line of out consists of exactly fields.
func hasRow(out string, fields ...string) bool {
	for _, l := range strings.Split(out, "\n") {
		if slices.Equal(strings.Fields(l), fields) {
			return true
		}
	}
	return false
}
