package lvm

import (
	"bytes"
	"errors"
	"testing"

	"github.com/dmsnap/dmsnap/dm"
)

func TestLabelRoundTrip(t *testing.T) {
	l := Label{PV: NewUUID(), Pool: NewUUID(), DeviceSize: 1 << 20, MetadataStart: MetadataStart, SlotSize: DefaultSlotSize, PEStart: 6144}
	b := encodeLabel(l)
	if len(b) != LabelSize || !bytes.Equal(b[:8], []byte("DMSNAPPV")) {
		t.Fatalf("label bytes %q", b[:16])
	}
	got, err := decodeLabel(b)
	if err != nil || got != l {
		t.Fatalf("decodeLabel = %+v, %v", got, err)
	}
	for i := range LabelSize {
		c := bytes.Clone(b)
		c[i] ^= 0x01
		if _, err := decodeLabel(c); err == nil {
			t.Fatalf("flipped bit in byte %d accepted", i)
		}
	}
	if _, err := decodeLabel(make([]byte, LabelSize)); !errors.Is(err, ErrNoLabel) {
		t.Errorf("zero sector: %v", err)
	}
	bad := l
	bad.PEStart = MetadataStart + 2*DefaultSlotSize - 1
	if _, err := decodeLabel(encodeLabel(bad)); !errors.Is(err, ErrCorrupt) {
		t.Errorf("overlapping layout: %v", err)
	}
}

func testDocument(t testing.TB) *Pool {
	p := testPool(t, 100, 50)
	p = must[*Pool](t)(p.AddVolume("base", 10))
	p = must[*Pool](t)(p.AddSnapshot(SnapshotSpec{Name: "snap", Origin: "base", COWExtents: 2, Store: dm.PersistentOverflow, ChunkSize: 16, DiscardZeroesCOW: true}))
	p, _ = p.AddPending(PendingOp{Op: "merge", Volume: p.Volume("snap").UUID, Step: "loaded", Args: map[string]string{"a": "b"}})
	p.Seqno = 7
	return p
}

func TestSlotRoundTrip(t *testing.T) {
	p := testDocument(t)
	h, payload, err := encodeSlot(p)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeSlot(append(h, payload...))
	if err != nil {
		t.Fatal(err)
	}
	if mustEncode(t, got) != mustEncode(t, p) {
		t.Errorf("round trip:\n%s\nwant\n%s", mustEncode(t, got), mustEncode(t, p))
	}
	// Every single-byte change in header or payload is detected.
	slot := append(h, payload...)
	for i := range slot {
		c := bytes.Clone(slot)
		c[i] ^= 0x20
		if _, err := decodeSlot(c); err == nil {
			t.Fatalf("flipped byte %d accepted", i)
		}
	}
}

// FuzzDecodeLabel: exactly one of label and error is meaningful, and valid
// labels round-trip.
func FuzzDecodeLabel(f *testing.F) {
	f.Add(encodeLabel(Label{PV: NewUUID(), Pool: NewUUID(), DeviceSize: 1 << 20, MetadataStart: 8, SlotSize: 2048, PEStart: 6144}))
	f.Add(make([]byte, LabelSize))
	f.Add([]byte("DMSNAPPV"))
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := decodeLabel(b)
		if err != nil {
			if l != (Label{}) {
				t.Fatalf("error %v with label %+v", err, l)
			}
			return
		}
		if !bytes.Equal(encodeLabel(l)[:112], b[:112]) {
			t.Fatalf("label does not round-trip")
		}
		if l.check() != nil {
			t.Fatal("decoded an inconsistent label")
		}
	})
}

// FuzzDecodeSlot: exactly one of pool and error is nil; a decoded pool
// validates and round-trips.
func FuzzDecodeSlot(f *testing.F) {
	p := testDocument(f)
	h, payload, err := encodeSlot(p)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(append(h, payload...))
	small := testPool(f, 3)
	small.Seqno = 1
	h, payload, _ = encodeSlot(small)
	f.Add(append(h, payload...))
	f.Add(make([]byte, slotHeaderSize))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := decodeSlot(b)
		if (got == nil) == (err == nil) {
			t.Fatalf("pool %v, error %v", got, err)
		}
		if err != nil {
			return
		}
		if err := got.Validate(); err != nil {
			t.Fatalf("decoded an invalid pool: %v", err)
		}
		h2, p2, err := encodeSlot(got)
		if err != nil {
			t.Fatal(err)
		}
		again, err := decodeSlot(append(h2, p2...))
		if err != nil || mustEncode(t, again) != mustEncode(t, got) {
			t.Fatalf("re-encoded pool does not round-trip: %v", err)
		}
	})
}

// FuzzDecodePayload fuzzes the document behind a matching checksum, so the
// JSON decoder and the model validation see the mutations.
func FuzzDecodePayload(f *testing.F) {
	p := testDocument(f)
	_, payload, err := encodeSlot(p)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(payload)
	f.Add([]byte(`{"format":"dmsnap-pool","version":1,"pool":null}`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		h := encodeSlotHeader(slotHeader{Seqno: p.Seqno, Length: uint64(len(payload)), PayloadCRC: crc32c(payload), Pool: p.UUID})
		got, err := decodeSlot(append(h, payload...))
		if (got == nil) == (err == nil) {
			t.Fatalf("pool %v, error %v", got, err)
		}
		if err != nil {
			return
		}
		if err := got.Validate(); err != nil {
			t.Fatalf("decoded an invalid pool: %v", err)
		}
		if got.FreeExtents() > got.TotalExtents() {
			t.Fatal("more free than total extents")
		}
	})
}
