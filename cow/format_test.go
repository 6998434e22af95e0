package cow

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"testing"
)

func TestHeaderCodecMatchesEncodingBinary(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 1000 {
		var raw [16]byte
		for i := range raw {
			raw[i] = byte(rng.Uint32())
		}
		var want struct{ Magic, Valid, Version, Chunk uint32 }
		if err := binary.Read(bytes.NewReader(raw[:]), binary.LittleEndian, &want); err != nil {
			t.Fatal(err)
		}
		var h Header
		if err := h.UnmarshalBinary(raw[:]); err != nil {
			t.Fatal(err)
		}
		if h.Magic != want.Magic || h.Valid != want.Valid || h.Version != want.Version || h.ChunkSectors != want.Chunk {
			t.Fatalf("decode %x = %+v, want %+v", raw, h, want)
		}
		b, _ := h.MarshalBinary()
		if !bytes.Equal(b, raw[:]) {
			t.Fatalf("encode %+v = %x, want %x", h, b, raw)
		}

		var rec struct{ Old, New uint64 }
		_ = binary.Read(bytes.NewReader(append(raw[:], raw[:]...)), binary.LittleEndian, &rec)
		e := getException(append(raw[:], raw[:]...))
		if uint64(e.Old) != rec.Old || uint64(e.New) != rec.New {
			t.Fatalf("exception %x = %+v, want %+v", raw, e, rec)
		}
		eb, _ := e.AppendBinary(nil)
		var buf bytes.Buffer
		_ = binary.Write(&buf, binary.LittleEndian, rec)
		if !bytes.Equal(eb, buf.Bytes()) {
			t.Fatalf("exception encode %+v = %x, want %x", e, eb, buf.Bytes())
		}
	}
	var h Header
	if err := h.UnmarshalBinary(make([]byte, 15)); !errors.Is(err, ErrTruncated) {
		t.Fatalf("15-byte header: %v, want ErrTruncated", err)
	}
}

func TestFormatBytes(t *testing.T) {
	for _, c := range []uint32{1, 8, 16, 1024} {
		chunkBytes := int64(c) * 512
		d := newMemDev(4 * chunkBytes)
		fill := bytes.Repeat([]byte{0xaa}, int(4*chunkBytes))
		if _, err := d.WriteAt(fill, 0); err != nil {
			t.Fatal(err)
		}
		if err := Format(d, c); err != nil {
			t.Fatal(err)
		}
		want := make([]byte, 2*chunkBytes)
		copy(want, []byte{'S', 'n', 'A', 'p', 1, 0, 0, 0, 1, 0, 0, 0})
		binary.LittleEndian.PutUint32(want[12:], c)
		if got := d.read(t, 0, 2*chunkBytes); !bytes.Equal(got, want) {
			t.Errorf("C=%d: header chunk and area 0 = %x..., want %x...", c, got[:32], want[:32])
		}
		if got := d.read(t, 2*chunkBytes, 2*chunkBytes); !bytes.Equal(got, fill[:2*chunkBytes]) {
			t.Errorf("C=%d: Format touched data chunks", c)
		}
	}
	if err := Format(newMemDev(1<<20), 12); !errors.Is(err, ErrBadChunkSize) {
		t.Errorf("Format C=12: %v, want ErrBadChunkSize", err)
	}
}

func TestZeroAndInvalidate(t *testing.T) {
	w, d := mustCreate(t, 16<<20, 8)
	for i := range 10 {
		mustAdd(t, w, Chunk(i))
	}

	inv := d.clone()
	if err := Invalidate(inv, 8); err != nil {
		t.Fatal(err)
	}
	_, err := Open(inv, inv.size)
	var he *HeaderError
	if !errors.Is(err, ErrInvalidated) || !errors.As(err, &he) {
		t.Fatalf("Open invalidated: %v, want ErrInvalidated in a *HeaderError", err)
	}
	if want := (Header{Magic: Magic, Valid: 0, Version: 1, ChunkSectors: 8}); he.Header != want {
		t.Errorf("header of invalidated store = %+v, want %+v", he.Header, want)
	}
	s, err := Decoder{AllowInvalidated: true}.Open(inv, inv.size)
	if err != nil {
		t.Fatalf("Open invalidated with AllowInvalidated: %v", err)
	}
	if s.Len() != 10 {
		t.Errorf("invalidated store has %d exceptions, want 10", s.Len())
	}
	if _, err := NewWriter(inv, s); !errors.Is(err, ErrInvalidated) {
		t.Errorf("NewWriter on invalidated store: %v, want ErrInvalidated", err)
	}

	z := d.clone()
	if err := Zero(z, 8); err != nil {
		t.Fatal(err)
	}
	if got := z.read(t, 0, 4096); !allZero(got) {
		t.Error("Zero left bytes in the first 4 KiB")
	}
	s, err = Open(z, z.size)
	if err != nil || !s.Fresh() || s.Len() != 0 {
		t.Fatalf("Open after Zero: %v, %v", s, err)
	}
	big := newMemDev(1 << 20)
	_, _ = big.WriteAt(bytes.Repeat([]byte{1}, 1<<20), 0)
	if err := Zero(big, 128); err != nil {
		t.Fatal(err)
	}
	if got := big.read(t, 0, 1<<20); !allZero(got[:64<<10]) || got[64<<10] != 1 {
		t.Error("Zero with 64 KiB chunks did not clear exactly the first chunk")
	}
}

func TestMetadataLocations(t *testing.T) {
	// C=8: E=256, areas at 1, 258, 515, ...
	for _, tc := range []struct {
		c    Chunk
		meta bool
	}{{0, true}, {1, true}, {2, false}, {257, false}, {258, true}, {259, false}, {515, true}} {
		if got := IsMetadata(8, tc.c); got != tc.meta {
			t.Errorf("IsMetadata(8, %d) = %v, want %v", tc.c, got, tc.meta)
		}
	}
	if got := AreaLocation(8, 2); got != 515 {
		t.Errorf("AreaLocation(8, 2) = %d, want 515", got)
	}
	if got := AreaLocation(1024, 1); got != 32770 {
		t.Errorf("AreaLocation(1024, 1) = %d, want 32770", got)
	}
}
