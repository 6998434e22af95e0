package lvm

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"

	"github.com/dmsnap/dmsnap/dm"
)

// On-disk layout of a PV; docs/formats.md describes it byte by byte.
const (
	// LabelOffset is the byte offset of the PV label: sector 1, as LVM2
	// (sector 0 stays free for a boot sector).
	LabelOffset = 512
	// LabelSize is the size of the label in bytes.
	LabelSize = 512
	// MetadataStart is the sector where the metadata area begins.
	MetadataStart dm.Sector = 8
	// DefaultSlotSize is the default size of each of the two metadata
	// slots: 1 MiB, about 6000 volumes.
	DefaultSlotSize dm.Sector = 2048
	// MinSlotSize is the smallest metadata slot accepted.
	MinSlotSize dm.Sector = 8
	// MaxSlotSize is the largest metadata slot accepted, on create and on
	// read: 16 MiB, about 100000 volumes. It bounds what reading a
	// hostile label can make dmsnap allocate.
	MaxSlotSize dm.Sector = 32768
	// PEAlign aligns the first extent: 1 MiB, as LVM2's default.
	PEAlign dm.Sector = 2048

	slotHeaderSize = 512
	labelVersion   = 1
	slotVersion    = 1
	// DocumentVersion is the newest version of the JSON pool description
	// that dmsnap reads and writes. Version 2 added the snapshot field
	// "read_only"; version 3 the pool's "features" and "extensions"
	// (features.go). A document is written at the lowest version that
	// holds it, so a pool without features stays readable by releases
	// that know only version 2, and one with features is refused by them
	// with their unknown-version error, never misread. Version 1
	// documents, a subset, are still read.
	DocumentVersion = 3
	// featuresVersion is the first document version with features.
	featuresVersion = 3
	documentFormat  = "dmsnap-pool"
)

var (
	labelMagic = [8]byte{'D', 'M', 'S', 'N', 'A', 'P', 'P', 'V'}
	slotMagic  = [8]byte{'D', 'M', 'S', 'N', 'A', 'P', 'M', 'D'}
	castagnoli = crc32.MakeTable(crc32.Castagnoli)
)

// Sentinels of the on-disk format.
var (
	// ErrNoLabel: the device carries no dmsnap PV label.
	ErrNoLabel = errors.New("no dmsnap label")
	// ErrCorrupt: a label, slot header or metadata document fails its
	// checksum or does not decode.
	ErrCorrupt = errors.New("corrupt metadata")
	// ErrUnknownVersion: the label, slot or document has a version this
	// dmsnap does not know (written by a newer one).
	ErrUnknownVersion = errors.New("unknown metadata version")
	// ErrNoMetadata: a PV has no valid metadata slot.
	ErrNoMetadata = errors.New("no valid metadata")
	// ErrMetadataFull: the pool description is larger than a slot.
	ErrMetadataFull = errors.New("metadata area full")
)

// Label identifies a PV and says where its metadata and extents are.
type Label struct {
	PV   UUID
	Pool UUID
	// DeviceSize is the device size when the label was written.
	DeviceSize dm.Sector
	// MetadataStart is the first sector of slot A; slot B follows it.
	MetadataStart dm.Sector
	SlotSize      dm.Sector
	PEStart       dm.Sector
}

func putUUID(b []byte, u UUID) { copy(b[:UUIDLen], u) }

func getUUID(b []byte) (UUID, error) { return ParseUUID(string(b[:UUIDLen])) }

// encodeLabel returns the 512-byte label.
func encodeLabel(l Label) []byte {
	b := make([]byte, LabelSize)
	copy(b[0:8], labelMagic[:])
	le := binary.LittleEndian
	le.PutUint32(b[8:], labelVersion)
	le.PutUint32(b[12:], LabelSize)
	putUUID(b[16:], l.PV)
	putUUID(b[48:], l.Pool)
	le.PutUint64(b[80:], uint64(l.DeviceSize))
	le.PutUint64(b[88:], uint64(l.MetadataStart))
	le.PutUint64(b[96:], uint64(l.SlotSize))
	le.PutUint64(b[104:], uint64(l.PEStart))
	le.PutUint32(b[508:], crc32.Checksum(b[:508], castagnoli))
	return b
}

// decodeLabel parses a label sector. It returns [ErrNoLabel] when the magic
// is absent, and errors wrapping [ErrCorrupt] or [ErrUnknownVersion].
func decodeLabel(b []byte) (Label, error) {
	if len(b) < LabelSize || !bytes.Equal(b[:8], labelMagic[:]) {
		return Label{}, ErrNoLabel
	}
	le := binary.LittleEndian
	if got, want := le.Uint32(b[508:]), crc32.Checksum(b[:508], castagnoli); got != want {
		return Label{}, fmt.Errorf("label: checksum %08x, want %08x: %w", got, want, ErrCorrupt)
	}
	if v := le.Uint32(b[8:]); v != labelVersion {
		return Label{}, fmt.Errorf("label version %d (this dmsnap knows %d): %w", v, labelVersion, ErrUnknownVersion)
	}
	if n := le.Uint32(b[12:]); n != LabelSize {
		return Label{}, fmt.Errorf("label: size %d: %w", n, ErrCorrupt)
	}
	var l Label
	var err error
	if l.PV, err = getUUID(b[16:]); err != nil {
		return Label{}, fmt.Errorf("label: pv %w: %w", err, ErrCorrupt)
	}
	if l.Pool, err = getUUID(b[48:]); err != nil {
		return Label{}, fmt.Errorf("label: pool %w: %w", err, ErrCorrupt)
	}
	l.DeviceSize = dm.Sector(le.Uint64(b[80:]))
	l.MetadataStart = dm.Sector(le.Uint64(b[88:]))
	l.SlotSize = dm.Sector(le.Uint64(b[96:]))
	l.PEStart = dm.Sector(le.Uint64(b[104:]))
	if err := l.check(); err != nil {
		return Label{}, fmt.Errorf("label: %w: %w", err, ErrCorrupt)
	}
	return l, nil
}

func (l Label) check() error {
	switch {
	case l.DeviceSize > MaxSize || l.PEStart > MaxSize || l.MetadataStart > MaxSize:
		return errors.New("field out of range")
	case l.MetadataStart*dm.SectorSize < LabelOffset+LabelSize:
		return fmt.Errorf("metadata at sector %d overlaps the label", l.MetadataStart)
	case l.SlotSize < MinSlotSize || l.SlotSize > MaxSlotSize:
		return fmt.Errorf("slot size %d sectors outside %d to %d", l.SlotSize, MinSlotSize, MaxSlotSize)
	case l.PEStart < l.MetadataStart+2*l.SlotSize:
		return fmt.Errorf("first extent at sector %d overlaps the metadata area", l.PEStart)
	}
	return nil
}

// checkDevice checks l against the device it was read from, whose real
// size is sizeBytes: the metadata area must lie on it, and the label must
// not claim a device larger than the real one (a truncated image, or a
// label copied from elsewhere), since the extents it maps would then read
// past the end.
func (l Label) checkDevice(sizeBytes int64) error {
	size := dm.Sector(max(sizeBytes, 0) / dm.SectorSize)
	switch {
	case l.PEStart > size:
		return fmt.Errorf("metadata area ends at sector %d, beyond the device's %d sectors", l.PEStart, size)
	case l.DeviceSize > size:
		return fmt.Errorf("label says the device has %d sectors, it has %d", l.DeviceSize, size)
	}
	return nil
}

// slotStart returns the first sector of slot i (0 = A, 1 = B).
func (l Label) slotStart(i int) dm.Sector { return l.MetadataStart + dm.Sector(i)*l.SlotSize }

// maxPayload returns the largest document a slot holds, in bytes.
func (l Label) maxPayload() uint64 { return l.SlotSize.Bytes() - slotHeaderSize }

type slotHeader struct {
	Seqno      uint64
	Length     uint64
	PayloadCRC uint32
	Pool       UUID
}

func encodeSlotHeader(h slotHeader) []byte {
	b := make([]byte, slotHeaderSize)
	copy(b[0:8], slotMagic[:])
	le := binary.LittleEndian
	le.PutUint32(b[8:], slotVersion)
	le.PutUint32(b[12:], slotHeaderSize)
	le.PutUint64(b[16:], h.Seqno)
	le.PutUint64(b[24:], h.Length)
	le.PutUint32(b[32:], h.PayloadCRC)
	putUUID(b[36:], h.Pool)
	le.PutUint32(b[508:], crc32.Checksum(b[:508], castagnoli))
	return b
}

// errEmptySlot marks a slot that was never written (all zero header).
var errEmptySlot = fmt.Errorf("empty slot: %w", ErrNoMetadata)

func decodeSlotHeader(b []byte) (slotHeader, error) {
	if len(b) < slotHeaderSize {
		return slotHeader{}, fmt.Errorf("slot header truncated: %w", ErrCorrupt)
	}
	if !bytes.Equal(b[:8], slotMagic[:]) {
		for _, c := range b[:slotHeaderSize] {
			if c != 0 {
				return slotHeader{}, fmt.Errorf("slot header: bad magic: %w", ErrCorrupt)
			}
		}
		return slotHeader{}, errEmptySlot
	}
	le := binary.LittleEndian
	if got, want := le.Uint32(b[508:]), crc32.Checksum(b[:508], castagnoli); got != want {
		return slotHeader{}, fmt.Errorf("slot header: checksum %08x, want %08x: %w", got, want, ErrCorrupt)
	}
	if v := le.Uint32(b[8:]); v != slotVersion {
		return slotHeader{}, fmt.Errorf("metadata slot version %d (this dmsnap knows %d): %w", v, slotVersion, ErrUnknownVersion)
	}
	if n := le.Uint32(b[12:]); n != slotHeaderSize {
		return slotHeader{}, fmt.Errorf("slot header: size %d: %w", n, ErrCorrupt)
	}
	h := slotHeader{Seqno: le.Uint64(b[16:]), Length: le.Uint64(b[24:]), PayloadCRC: le.Uint32(b[32:])}
	var err error
	if h.Pool, err = getUUID(b[36:]); err != nil {
		return slotHeader{}, fmt.Errorf("slot header: pool %w: %w", err, ErrCorrupt)
	}
	if h.Seqno == 0 {
		return slotHeader{}, fmt.Errorf("slot header: seqno 0: %w", ErrCorrupt)
	}
	return h, nil
}

type document struct {
	Format  string `json:"format"`
	Version int    `json:"version"`
	Pool    *Pool  `json:"pool"`
}

// encodeDocument returns the JSON pool description.
func encodeDocument(p *Pool) ([]byte, error) {
	v := featuresVersion - 1
	if !p.Features.Empty() || len(p.Extensions) > 0 {
		v = featuresVersion
	}
	b, err := json.Marshal(document{Format: documentFormat, Version: v, Pool: p})
	if err != nil {
		return nil, fmt.Errorf("encode pool %s: %w", p.Name, err)
	}
	return append(b, '\n'), nil
}

// decodePayload checks the payload against h and decodes it.
func decodePayload(h slotHeader, payload []byte) (*Pool, error) {
	if uint64(len(payload)) != h.Length {
		return nil, fmt.Errorf("payload: %d bytes, header says %d: %w", len(payload), h.Length, ErrCorrupt)
	}
	if got := crc32c(payload); got != h.PayloadCRC {
		return nil, fmt.Errorf("payload: checksum %08x, want %08x: %w", got, h.PayloadCRC, ErrCorrupt)
	}
	if err := checkDensity(payload); err != nil {
		return nil, fmt.Errorf("payload: %w: %w", err, ErrCorrupt)
	}
	var probe struct {
		Format  string `json:"format"`
		Version int    `json:"version"`
	}
	if err := json.Unmarshal(payload, &probe); err != nil {
		return nil, fmt.Errorf("payload: %v: %w", err, ErrCorrupt)
	}
	if probe.Format != documentFormat {
		return nil, fmt.Errorf("payload: format %q: %w", probe.Format, ErrCorrupt)
	}
	if probe.Version < 1 || probe.Version > DocumentVersion {
		return nil, fmt.Errorf("metadata document version %d (this dmsnap knows %d): %w", probe.Version, DocumentVersion, ErrUnknownVersion)
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	var doc document
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("payload: %v: %w", err, ErrCorrupt)
	}
	p := doc.Pool
	if p == nil {
		return nil, fmt.Errorf("payload: no pool: %w", ErrCorrupt)
	}
	if p.Seqno != h.Seqno {
		return nil, fmt.Errorf("payload: seqno %d, header says %d: %w", p.Seqno, h.Seqno, ErrCorrupt)
	}
	if p.UUID != h.Pool {
		return nil, fmt.Errorf("payload: pool %s, header says %s: %w", p.UUID, h.Pool, ErrCorrupt)
	}
	if probe.Version < featuresVersion && (!p.Features.Empty() || p.Extensions != nil) {
		return nil, fmt.Errorf("payload: features in a version %d document: %w", probe.Version, ErrCorrupt)
	}
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("payload: %w: %w", err, ErrCorrupt)
	}
	if err := p.checkReadable(); err != nil {
		return nil, err
	}
	return p, nil
}

// minObjectBytes is the fewest document bytes per JSON object accepted.
// Every object dmsnap writes but the small pending-op argument maps holds
// a 32-digit UUID, so real documents have well over 40 bytes per object.
const minObjectBytes = 16

// checkDensity refuses a document with more objects than its size allows.
// A decoded object costs up to ~80 bytes (a Snapshot or Volume), so
// "[{},{},...]" would otherwise make a slot cost some 50 times its size;
// with this bound decoding stays within ~10 times.
func checkDensity(doc []byte) error {
	objects, inString, escaped := 0, false, false
	for _, c := range doc {
		switch {
		case escaped:
			escaped = false
		case inString && c == '\\':
			escaped = true
		case c == '"':
			inString = !inString
		case !inString && c == '{':
			objects++
		}
	}
	if objects*minObjectBytes > len(doc) {
		return fmt.Errorf("%d objects in %d bytes, more than one per %d bytes", objects, len(doc), minObjectBytes)
	}
	return nil
}

// decodeSlot decodes a whole slot: header followed by payload.
func decodeSlot(b []byte) (*Pool, error) {
	h, err := decodeSlotHeader(b)
	if err != nil {
		return nil, err
	}
	if h.Length > uint64(len(b)-slotHeaderSize) {
		return nil, fmt.Errorf("payload: %d bytes beyond the slot: %w", h.Length, ErrCorrupt)
	}
	return decodePayload(h, b[slotHeaderSize:slotHeaderSize+int(h.Length)])
}

// encodeSlot returns header and payload of p at seqno.
func encodeSlot(p *Pool) (header, payload []byte, err error) {
	payload, err = encodeDocument(p)
	if err != nil {
		return nil, nil, err
	}
	header = encodeSlotHeader(slotHeader{Seqno: p.Seqno, Length: uint64(len(payload)), PayloadCRC: crc32c(payload), Pool: p.UUID})
	return header, payload, nil
}

func crc32c(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }
