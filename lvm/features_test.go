package lvm

import (
	"bytes"
	"encoding/json"
	"errors"
	"hash/crc32"
	"strings"
	"testing"
)

// putDocument replaces slot 0 of d's pool (the only slot Create wrote)
// with the document of p, as a later dmsnap would have written it.
func putDocument(t *testing.T, d *memDisk, p *Pool) {
	t.Helper()
	l := must[Label](t)(ReadLabel(d))
	payload := []byte(mustEncode(t, p))
	hdr := encodeSlotHeader(slotHeader{Seqno: p.Seqno, Length: uint64(len(payload)), PayloadCRC: crc32.Checksum(payload, castagnoli), Pool: p.UUID})
	off := l.slotStart(0).Bytes()
	d.put(off, hdr)
	d.put(off+slotHeaderSize, payload)
}

func documentVersion(t *testing.T, p *Pool) int {
	t.Helper()
	var probe struct{ Version int }
	if err := json.Unmarshal([]byte(mustEncode(t, p)), &probe); err != nil {
		t.Fatal(err)
	}
	return probe.Version
}

// TestFeaturesVersion: a pool without features is written as a version 2
// document, which the previous release reads; one with a feature or an
// extension as version 3, which the previous release (it knows 2) refuses
// as an unknown version instead of misreading.
func TestFeaturesVersion(t *testing.T) {
	d := newMemDisk("/dev/a", 1<<14)
	s := must[*Store](t)(Create("vg0", disks(d), smallOpts()))
	if v := documentVersion(t, s.Pool); v != 2 {
		t.Errorf("pool without features: document version %d, want 2", v)
	}
	next := s.Pool.Clone()
	if err := next.SetExtension("dmsnap.test", Compat, map[string]int{"x": 1}); err != nil {
		t.Fatal(err)
	}
	if v := documentVersion(t, next); v != 3 {
		t.Errorf("pool with an extension: document version %d, want 3", v)
	}
	if err := next.SetExtension("dmsnap.test", Compat, nil); err != nil {
		t.Fatal(err)
	}
	if v := documentVersion(t, next); v != 2 || !next.Features.Empty() || next.Extensions != nil {
		t.Errorf("extension removed: version %d, features %+v, extensions %v", v, next.Features, next.Extensions)
	}
}

// TestUnknownCompatPreserved: a compat feature and its extension this
// dmsnap does not know are read, and every rewrite keeps them byte for
// byte.
func TestUnknownCompatPreserved(t *testing.T) {
	d := newMemDisk("/dev/a", 1<<14)
	s := must[*Store](t)(Create("vg0", disks(d), smallOpts()))
	p := s.Pool.Clone()
	p.Features.Compat = []string{"org.future:policy"}
	p.Extensions = map[string]json.RawMessage{"org.future:policy": json.RawMessage(`{"keep":[1,2,3],"nested":{"a":"b"}}`)}
	putDocument(t, d, p)

	s = must[*Store](t)(Load(disks(d)))
	if why := s.Pool.ReadOnlyReason(); why != "" {
		t.Fatalf("compat feature made the pool read-only: %s", why)
	}
	next, err := s.Pool.AddVolume("data", 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(next); err != nil {
		t.Fatal(err)
	}
	got := must[*Store](t)(Load(disks(d))).Pool
	if got.Volume("data") == nil {
		t.Fatal("the commit was lost")
	}
	if !bytes.Equal(got.Extensions["org.future:policy"], p.Extensions["org.future:policy"]) || !got.Features.Has("org.future:policy") {
		t.Errorf("after a rewrite: features %+v, extensions %s", got.Features, got.Extensions)
	}
}

// TestUnknownROCompat: a ro_compat feature this dmsnap does not know
// lets it read the pool but not commit to it; nothing is written.
func TestUnknownROCompat(t *testing.T) {
	d := newMemDisk("/dev/a", 1<<14)
	s := must[*Store](t)(Create("vg0", disks(d), smallOpts()))
	p := s.Pool.Clone()
	p.Features.ROCompat = []string{"org.future:journal"}
	putDocument(t, d, p)
	before := d.clone(true)

	s = must[*Store](t)(Load(disks(d)))
	why := s.Pool.ReadOnlyReason()
	if !strings.Contains(why, "org.future:journal") || !strings.Contains(why, "newer dmsnap") {
		t.Errorf("ReadOnlyReason = %q", why)
	}
	next, err := s.Pool.AddVolume("data", 1)
	if err != nil {
		t.Fatal(err)
	}
	err = s.Commit(next)
	if !errors.Is(err, ErrReadOnlyFeature) || !strings.Contains(err.Error(), "org.future:journal") {
		t.Fatalf("Commit = %v, want ErrReadOnlyFeature naming the feature", err)
	}
	if !bytes.Equal(d.bytesAt(0, int(d.size)), before.bytesAt(0, int(before.size))) {
		t.Error("a refused commit changed the disk")
	}
	// Dropping the feature is a change too, and refused.
	next = s.Pool.Clone()
	next.Features = Features{}
	if err := s.Commit(next); !errors.Is(err, ErrReadOnlyFeature) {
		t.Errorf("Commit dropping the feature = %v", err)
	}
}

// TestUnknownIncompat: an incompat feature this dmsnap does not know makes
// the pool unreadable, with an error naming it that is also an unknown
// version (so discovery reports it as a newer pool, not as missing).
func TestUnknownIncompat(t *testing.T) {
	d := newMemDisk("/dev/a", 1<<14)
	s := must[*Store](t)(Create("vg0", disks(d), smallOpts()))
	p := s.Pool.Clone()
	p.Features.Incompat = []string{"org.future:layout"}
	putDocument(t, d, p)
	_, err := Load(disks(d))
	if !errors.Is(err, ErrUnknownFeature) || !errors.Is(err, ErrUnknownVersion) || !strings.Contains(err.Error(), "org.future:layout") {
		t.Errorf("Load = %v", err)
	}
}

// TestBadFeatures: malformed features and extensions make a slot corrupt
// (here the only one, so the pool has no valid metadata), as does a
// feature in a document that claims version 2.
func TestBadFeatures(t *testing.T) {
	for _, c := range []struct {
		name string
		edit func(p *Pool)
	}{
		{"bad name", func(p *Pool) { p.Features.Compat = []string{"Bad Name"} }},
		{"listed twice", func(p *Pool) { p.Features.Compat = []string{"a"}; p.Features.ROCompat = []string{"a"} }},
		{"too many", func(p *Pool) {
			for i := range maxFeatures + 1 {
				p.Features.Compat = append(p.Features.Compat, "f"+strings.Repeat("x", i%40)+string(rune('a'+i%26))+string(rune('a'+i/26)))
			}
		}},
		{"extension name", func(p *Pool) { p.Extensions = map[string]json.RawMessage{"UPPER": json.RawMessage(`1`)} }},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := newMemDisk("/dev/a", 1<<14)
			s := must[*Store](t)(Create("vg0", disks(d), smallOpts()))
			p := s.Pool.Clone()
			c.edit(p)
			if err := p.Validate(); !errors.Is(err, ErrInvalidModel) {
				t.Errorf("Validate = %v", err)
			}
			putDocument(t, d, p)
			if _, err := Load(disks(d)); !errors.Is(err, ErrNoMetadata) {
				t.Errorf("Load = %v, want ErrNoMetadata (the only slot is corrupt)", err)
			}
		})
	}
	t.Run("features in version 2", func(t *testing.T) {
		d := newMemDisk("/dev/a", 1<<14)
		s := must[*Store](t)(Create("vg0", disks(d), smallOpts()))
		p := s.Pool.Clone()
		p.Features.Compat = []string{"a"}
		payload := []byte(strings.Replace(mustEncode(t, p), `"version":3`, `"version":2`, 1))
		l := must[Label](t)(ReadLabel(d))
		hdr := encodeSlotHeader(slotHeader{Seqno: p.Seqno, Length: uint64(len(payload)), PayloadCRC: crc32.Checksum(payload, castagnoli), Pool: p.UUID})
		d.put(l.slotStart(0).Bytes(), hdr)
		d.put(l.slotStart(0).Bytes()+slotHeaderSize, payload)
		if _, err := Load(disks(d)); !errors.Is(err, ErrNoMetadata) {
			t.Errorf("Load = %v, want ErrNoMetadata (the only slot is corrupt)", err)
		}
	})
}
