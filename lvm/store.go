package lvm

import (
	"errors"
	"fmt"
	"hash/crc32"
	"slices"

	"github.com/dmsnap/dmsnap/dm"
	"github.com/dmsnap/dmsnap/internal/failpoint"
)

// More sentinels of [Store].
var (
	// ErrMissingPV: a PV of the pool has no disk; the pool can be read
	// but not committed, and volumes on it cannot be activated.
	ErrMissingPV = errors.New("missing PV")
	// ErrMixedPools: the disks given to Load belong to different pools.
	ErrMixedPools = errors.New("disks of different pools")
	// ErrDuplicatePV: two disks carry the same PV UUID (a copied image?).
	ErrDuplicatePV = errors.New("duplicate PV")
	// ErrTooSmall: the device cannot hold the metadata and one extent.
	ErrTooSmall = errors.New("device too small")
)

// Warning is something Load or Scan noticed and worked around: a corrupt
// slot it fell back from, a stale or missing PV. The CLI prints them.
type Warning struct {
	PV   UUID   // the PV concerned, if any
	Disk string // the disk concerned, if any
	Msg  string
}

func (w Warning) String() string {
	switch {
	case w.Disk != "":
		return w.Disk + ": " + w.Msg
	case w.PV != "":
		return "pv " + string(w.PV) + ": " + w.Msg
	}
	return w.Msg
}

// slotRead is what one metadata slot of one disk holds.
type slotRead struct {
	pool   *Pool // nil unless valid
	header slotHeader
	hdrOK  bool // header decoded (pool may still be nil)
	err    error
}

// readSlot reads slot i of the PV labelled l on d.
func readSlot(d Disk, l Label, i int) slotRead {
	off := int64(l.slotStart(i).Bytes())
	hb := make([]byte, slotHeaderSize)
	if err := readFull(d, hb, off); err != nil {
		return slotRead{err: fmt.Errorf("read: %w", err)}
	}
	h, err := decodeSlotHeader(hb)
	if err != nil {
		return slotRead{err: err}
	}
	r := slotRead{header: h, hdrOK: true}
	switch {
	case h.Pool != l.Pool:
		r.err = fmt.Errorf("slot belongs to pool %s, label to %s: %w", h.Pool, l.Pool, ErrCorrupt)
	case h.Length > l.maxPayload():
		r.err = fmt.Errorf("payload of %d bytes exceeds the slot: %w", h.Length, ErrCorrupt)
	case h.Length > uint64(max(d.Size()-off-slotHeaderSize, 0)):
		r.err = fmt.Errorf("payload of %d bytes runs past the end of the %d-byte device: %w", h.Length, d.Size(), ErrCorrupt)
	}
	if r.err != nil {
		return r
	}
	// The header's CRC only proves the header was written whole, not that
	// its Length is sane: check the payload's CRC in bounded pieces before
	// allocating Length bytes for it.
	if err := checkPayloadCRC(d, off+slotHeaderSize, h); err != nil {
		r.err = err
		return r
	}
	payload := make([]byte, h.Length)
	if err := readFull(d, payload, off+slotHeaderSize); err != nil {
		r.err = fmt.Errorf("read: %w", err)
		return r
	}
	r.pool, r.err = decodePayload(h, payload)
	return r
}

// crcPiece is how much of a payload checkPayloadCRC reads at a time.
const crcPiece = 64 << 10

// checkPayloadCRC reads the h.Length payload bytes at off in pieces of
// [crcPiece] and compares their CRC with the header's.
func checkPayloadCRC(d Disk, off int64, h slotHeader) error {
	buf := make([]byte, min(h.Length, crcPiece))
	var crc uint32
	for n := uint64(0); n < h.Length; {
		b := buf[:min(h.Length-n, uint64(len(buf)))]
		if err := readFull(d, b, off+int64(n)); err != nil {
			return fmt.Errorf("read: %w", err)
		}
		crc = crc32.Update(crc, castagnoli, b)
		n += uint64(len(b))
	}
	if crc != h.PayloadCRC {
		return fmt.Errorf("payload: checksum %08x, want %08x: %w", crc, h.PayloadCRC, ErrCorrupt)
	}
	return nil
}

// readSlots reads both slots and returns the index of the valid one with
// the highest seqno (-1 if none), the slots, and warnings for slots that are
// damaged. An unknown version is an error, never skipped: a newer dmsnap
// wrote it.
func readSlots(d Disk, l Label) (best int, slots [2]slotRead, warns []Warning, err error) {
	best = -1
	for i := range slots {
		slots[i] = readSlot(d, l, i)
		s := slots[i]
		if errors.Is(s.err, ErrUnknownVersion) {
			return -1, slots, nil, fmt.Errorf("%s slot %c: %w", diskName(d), 'A'+i, s.err)
		}
		if s.pool != nil && (best < 0 || s.header.Seqno > slots[best].header.Seqno) {
			best = i
		}
	}
	for i, s := range slots {
		if s.pool != nil || errors.Is(s.err, errEmptySlot) {
			continue
		}
		msg := fmt.Sprintf("metadata slot %c is damaged (%v)", 'A'+i, s.err)
		if best >= 0 {
			msg += fmt.Sprintf("; using slot %c, seqno %d", 'A'+best, slots[best].header.Seqno)
		}
		warns = append(warns, Warning{PV: l.PV, Disk: diskName(d), Msg: msg})
	}
	return best, slots, warns, nil
}

// readNewestSlot returns the newest valid pool description on d.
func readNewestSlot(d Disk, l Label) (*Pool, []Warning, error) {
	best, slots, warns, err := readSlots(d, l)
	if err != nil {
		return nil, warns, err
	}
	if best < 0 {
		return nil, warns, fmt.Errorf("%s: %w", diskName(d), ErrNoMetadata)
	}
	return slots[best].pool, warns, nil
}

// ReadLabel reads the PV label of d. It returns [ErrNoLabel] (wrapped) when
// d is not a PV, or an error wrapping [ErrCorrupt] or [ErrUnknownVersion].
func ReadLabel(d Disk) (Label, error) {
	b := make([]byte, LabelSize)
	if err := readFull(d, b, LabelOffset); err != nil {
		return Label{}, fmt.Errorf("%s: read label: %w", diskName(d), err)
	}
	l, err := decodeLabel(b)
	if err != nil {
		return Label{}, fmt.Errorf("%s: %w", diskName(d), err)
	}
	if err := l.checkDevice(d.Size()); err != nil {
		return Label{}, fmt.Errorf("%s: label: %w: %w", diskName(d), err, ErrCorrupt)
	}
	return l, nil
}

// ScanResult describes one PV found by [Scan].
type ScanResult struct {
	Disk     Disk
	Label    Label
	PoolName string // from the newest valid metadata; "" if none
	Seqno    uint64
}

// Scan reads the labels of disks and returns those that are PVs, with the
// pool name from their newest metadata. Disks without a label are skipped
// silently; damaged labels and metadata become warnings.
func Scan(disks []Disk) ([]ScanResult, []Warning) {
	var out []ScanResult
	var warns []Warning
	for _, d := range disks {
		l, err := ReadLabel(d)
		if errors.Is(err, ErrNoLabel) {
			continue
		}
		if err != nil {
			warns = append(warns, Warning{Disk: diskName(d), Msg: err.Error()})
			continue
		}
		r := ScanResult{Disk: d, Label: l}
		p, w, err := readNewestSlot(d, l)
		warns = append(warns, w...)
		if err != nil {
			warns = append(warns, Warning{PV: l.PV, Disk: diskName(d), Msg: err.Error()})
		} else {
			r.PoolName, r.Seqno = p.Name, p.Seqno
		}
		out = append(out, r)
	}
	return out, warns
}

// Store is a pool bound to the disks that hold it: the result of [Create]
// or [Load], and the only way to commit. It does not own the disks.
type Store struct {
	// Pool is the newest committed description. Treat it as read-only:
	// derive changes with the Pool methods, then Commit them.
	Pool *Pool
	// Disks maps each present PV to its disk.
	Disks map[UUID]Disk
	// Missing lists PVs of the pool that no disk carries.
	Missing []UUID
	// Warnings collects what Load noticed.
	Warnings []Warning

	labels   map[UUID]Label
	live     map[UUID]int // per PV, the slot holding its newest valid copy (-1: none)
	maxSeqno uint64       // highest seqno seen or attempted
}

// CreateOptions tune [Create] and [Store.Extend].
type CreateOptions struct {
	ExtentSize dm.Sector // default DefaultExtentSize; ignored by Extend
	SlotSize   dm.Sector // size of each metadata slot; default DefaultSlotSize
	// Force overwrites devices that hold a signature ([ErrSignature]).
	Force bool
}

func alignUp(s, a dm.Sector) dm.Sector { return (s + a - 1) / a * a }

// newPV checks d and lays out a PV on it.
func newPV(p *Pool, d Disk, opts CreateOptions) (PV, Label, error) {
	name := diskName(d)
	slot := opts.SlotSize
	if slot == 0 {
		slot = DefaultSlotSize
	}
	if slot < MinSlotSize || slot > MaxSlotSize {
		return PV{}, Label{}, fmt.Errorf("metadata slot size %s: must be from %s to %s: %w", FormatSize(slot), FormatSize(MinSlotSize), FormatSize(MaxSlotSize), ErrBadSize)
	}
	if !opts.Force {
		if err := DetectSignature(d); err != nil {
			return PV{}, Label{}, err
		}
	}
	size := dm.Sector(d.Size() / dm.SectorSize)
	peStart := alignUp(MetadataStart+2*slot, PEAlign)
	if size < peStart+p.ExtentSize {
		return PV{}, Label{}, fmt.Errorf("%s: %s, need at least %s for metadata and one extent: %w",
			name, FormatSize(size), FormatSize(peStart+p.ExtentSize), ErrTooSmall)
	}
	pv := PV{UUID: NewUUID(), DeviceHint: name, Size: size, PEStart: peStart, PECount: ExtentCount((size - peStart) / p.ExtentSize)}
	l := Label{PV: pv.UUID, Pool: p.UUID, DeviceSize: size, MetadataStart: MetadataStart, SlotSize: slot, PEStart: peStart}
	return pv, l, nil
}

// initPV writes p (already carrying its seqno) to a new PV: it zeroes
// the first 4 KiB and the metadata area, writes slot A and syncs. The label
// is written separately, last.
func initPV(d Disk, l Label, p *Pool, header, payload []byte) error {
	name := diskName(d)
	if uint64(len(payload)) > l.maxPayload() {
		return fmt.Errorf("%s: pool description of %d bytes exceeds the %d-byte slot: %w", name, len(payload), l.maxPayload(), ErrMetadataFull)
	}
	end := int64(l.slotStart(2).Bytes())
	zero := make([]byte, min(end, 1<<20))
	for off := int64(0); off < end; off += int64(len(zero)) {
		n := min(int64(len(zero)), end-off)
		if _, err := d.WriteAt(zero[:n], off); err != nil {
			return fmt.Errorf("%s: wipe metadata area: %w", name, err)
		}
	}
	off := int64(l.slotStart(0).Bytes())
	if _, err := d.WriteAt(payload, off+slotHeaderSize); err != nil {
		return fmt.Errorf("%s: write metadata: %w", name, err)
	}
	if _, err := d.WriteAt(header, off); err != nil {
		return fmt.Errorf("%s: write metadata: %w", name, err)
	}
	if err := d.Sync(); err != nil {
		return fmt.Errorf("%s: sync: %w", name, err)
	}
	return nil
}

func writeLabel(d Disk, l Label) error {
	if _, err := d.WriteAt(encodeLabel(l), LabelOffset); err != nil {
		return fmt.Errorf("%s: write label: %w", diskName(d), err)
	}
	if err := d.Sync(); err != nil {
		return fmt.Errorf("%s: sync: %w", diskName(d), err)
	}
	return nil
}

// Create makes a pool called name over disks and commits its first
// description (seqno 1) to every one: metadata first, labels last, so that
// a crash leaves no half-made PV that claims a pool. Each disk is checked
// for signatures first ([ErrSignature], [ErrInUse]; opts.Force skips that)
// and for size ([ErrTooSmall]); nothing is written unless every disk
// passes.
func Create(name string, disks []Disk, opts CreateOptions) (*Store, error) {
	p, err := NewPool(name, opts.ExtentSize)
	if err != nil {
		return nil, err
	}
	if len(disks) == 0 {
		return nil, fmt.Errorf("create pool %s: no devices", name)
	}
	s := &Store{Disks: map[UUID]Disk{}, labels: map[UUID]Label{}, live: map[UUID]int{}}
	for _, d := range disks {
		pv, l, err := newPV(p, d, opts)
		if err != nil {
			return nil, fmt.Errorf("create pool %s: %w", name, err)
		}
		p.PVs = append(p.PVs, pv)
		s.Disks[pv.UUID], s.labels[pv.UUID] = d, l
	}
	p.Seqno = 1
	if err := p.Validate(); err != nil {
		return nil, err
	}
	header, payload, err := encodeSlot(p)
	if err != nil {
		return nil, err
	}
	for _, pv := range p.PVs {
		if err := initPV(s.Disks[pv.UUID], s.labels[pv.UUID], p, header, payload); err != nil {
			return nil, fmt.Errorf("create pool %s: %w", name, err)
		}
		s.live[pv.UUID] = 0
	}
	failpointHit("lvm.create.after-metadata")
	for _, pv := range p.PVs {
		if err := writeLabel(s.Disks[pv.UUID], s.labels[pv.UUID]); err != nil {
			return nil, fmt.Errorf("create pool %s: %w", name, err)
		}
	}
	s.Pool, s.maxSeqno = p, 1
	return s, nil
}

// Load reads the pool whose PVs are disks. Every disk must carry a label
// of the same pool ([ErrNoLabel], [ErrMixedPools], [ErrDuplicatePV]). The
// newest valid metadata over all PVs wins, since every commit reaches
// every PV. Damaged slots, stale and missing PVs, and labelled disks the
// metadata does not list become Warnings; missing PVs are listed in
// Missing. An unknown version anywhere is an error ([ErrUnknownVersion]);
// no valid metadata at all is [ErrNoMetadata].
func Load(disks []Disk) (*Store, error) {
	if len(disks) == 0 {
		return nil, fmt.Errorf("load pool: no devices")
	}
	s := &Store{Disks: map[UUID]Disk{}, labels: map[UUID]Label{}, live: map[UUID]int{}}
	type cand struct {
		pool *Pool
		disk Disk
		crc  uint32
	}
	var newest *cand
	found := map[UUID]Disk{}
	var first Disk
	var poolUUID UUID
	seqOf := map[UUID]uint64{}
	for _, d := range disks {
		l, err := ReadLabel(d)
		if err != nil {
			return nil, fmt.Errorf("load pool: %w", err)
		}
		if first == nil {
			first, poolUUID = d, l.Pool
		} else if l.Pool != poolUUID {
			return nil, fmt.Errorf("load pool: %s belongs to pool %s, %s to %s: %w",
				diskName(d), l.Pool, diskName(first), poolUUID, ErrMixedPools)
		}
		if prev, ok := found[l.PV]; ok {
			return nil, fmt.Errorf("load pool: %s and %s both carry pv %s: %w", diskName(prev), diskName(d), l.PV, ErrDuplicatePV)
		}
		found[l.PV], s.labels[l.PV] = d, l
		best, slots, warns, err := readSlots(d, l)
		if err != nil {
			return nil, fmt.Errorf("load pool: %w", err)
		}
		s.Warnings = append(s.Warnings, warns...)
		s.live[l.PV] = best
		for _, sl := range slots {
			if sl.hdrOK {
				s.maxSeqno = max(s.maxSeqno, sl.header.Seqno)
			}
		}
		if best < 0 {
			s.Warnings = append(s.Warnings, Warning{PV: l.PV, Disk: diskName(d), Msg: "no valid metadata on this PV"})
			continue
		}
		p := slots[best].pool
		seqOf[l.PV] = p.Seqno
		switch {
		case newest == nil || p.Seqno > newest.pool.Seqno:
			newest = &cand{p, d, slots[best].header.PayloadCRC}
		case p.Seqno == newest.pool.Seqno && slots[best].header.PayloadCRC != newest.crc:
			s.Warnings = append(s.Warnings, Warning{PV: l.PV, Disk: diskName(d), Msg: fmt.Sprintf(
				"metadata seqno %d differs from the copy on %s (a commit made without all PVs?); using %s", p.Seqno, diskName(newest.disk), diskName(newest.disk))})
		}
	}
	if newest == nil {
		return nil, fmt.Errorf("load pool %s: %w on any PV", poolUUID, ErrNoMetadata)
	}
	p := newest.pool.Clone()
	for i := range p.PVs {
		pv := &p.PVs[i]
		d, ok := found[pv.UUID]
		if !ok {
			s.Missing = append(s.Missing, pv.UUID)
			s.Warnings = append(s.Warnings, Warning{PV: pv.UUID, Msg: fmt.Sprintf("missing (last seen at %s)", pv.DeviceHint)})
			continue
		}
		l := s.labels[pv.UUID]
		if need := pv.PEStart + p.Sectors(pv.PECount); l.PEStart != pv.PEStart || dm.Sector(d.Size()/dm.SectorSize) < need {
			s.Missing = append(s.Missing, pv.UUID)
			s.Warnings = append(s.Warnings, Warning{PV: pv.UUID, Disk: diskName(d),
				Msg: fmt.Sprintf("device of %s does not match the metadata (needs %s from sector %d); treated as missing", FormatSize(dm.Sector(d.Size()/dm.SectorSize)), FormatSize(need), pv.PEStart)})
			continue
		}
		s.Disks[pv.UUID] = d
		pv.DeviceHint = diskName(d)
		if seq := seqOf[pv.UUID]; seq != p.Seqno {
			s.Warnings = append(s.Warnings, Warning{PV: pv.UUID, Disk: diskName(d),
				Msg: fmt.Sprintf("metadata seqno %d is older than the pool's %d (interrupted commit); the next commit updates it", seq, p.Seqno)})
		}
	}
	for _, d := range disks {
		l, _ := ReadLabel(d)
		if p.PV(l.PV) == nil {
			s.Warnings = append(s.Warnings, Warning{PV: l.PV, Disk: diskName(d), Msg: "labelled for this pool but not in its metadata (interrupted extend?); ignored"})
		}
	}
	s.Pool = p
	return s, nil
}

// Commit writes next as the pool's new description to every PV, with the
// next sequence number, and makes it s.Pool. On each PV it overwrites the
// slot that does not hold that PV's newest valid copy: document first,
// sync, then the header that makes it valid, sync. A crash at any point
// leaves every PV with its old copy or the new one, and Load picks the
// newest. Commit refuses while PVs are missing ([ErrMissingPV]), when next
// is invalid ([ErrInvalidModel]) or does not fit a slot ([ErrMetadataFull]).
// After a failed commit, s.Pool is unchanged; some PVs may hold next, and a
// retry uses a higher seqno.
func (s *Store) Commit(next *Pool) error {
	if len(s.Missing) > 0 {
		return fmt.Errorf("commit pool %s: %d PVs missing: %w", s.Pool.Name, len(s.Missing), ErrMissingPV)
	}
	if next.UUID != s.Pool.UUID {
		return fmt.Errorf("commit pool %s: description of another pool %s: %w", s.Pool.Name, next.UUID, ErrInvalidModel)
	}
	for _, pv := range next.PVs {
		if _, ok := s.Disks[pv.UUID]; !ok {
			return fmt.Errorf("commit pool %s: pv %s has no disk: %w", s.Pool.Name, pv.UUID, ErrMissingPV)
		}
	}
	q, err := s.commit(next, nil)
	if err != nil {
		return fmt.Errorf("commit pool %s: %w", s.Pool.Name, err)
	}
	s.Pool = q
	return nil
}

// commit writes next (with a fresh seqno) to the new PVs, fully, then to
// every PV already in s.
func (s *Store) commit(next *Pool, fresh []UUID) (*Pool, error) {
	// A pool with a ro_compat feature this dmsnap does not know is never
	// written, nor is one that would gain or lose such a feature.
	if s.Pool != nil {
		if err := s.Pool.checkWritable(); err != nil {
			return nil, err
		}
	}
	if err := next.checkWritable(); err != nil {
		return nil, err
	}
	q := next.Clone()
	s.maxSeqno++
	q.Seqno = s.maxSeqno
	if err := q.Validate(); err != nil {
		return nil, err
	}
	header, payload, err := encodeSlot(q)
	if err != nil {
		return nil, err
	}
	for _, pv := range q.PVs {
		if l := s.labels[pv.UUID]; uint64(len(payload)) > l.maxPayload() {
			return nil, fmt.Errorf("pool description of %d bytes exceeds the %d-byte metadata slot of pv %s: %w",
				len(payload), l.maxPayload(), pv.UUID, ErrMetadataFull)
		}
	}
	failpointHit("lvm.commit.before-write")
	for _, u := range fresh {
		d, l := s.Disks[u], s.labels[u]
		if err := initPV(d, l, q, header, payload); err != nil {
			return nil, err
		}
		if err := writeLabel(d, l); err != nil {
			return nil, err
		}
		s.live[u] = 0
	}
	if len(fresh) > 0 {
		failpointHit("lvm.extend.after-new-pvs")
	}
	for _, pv := range q.PVs {
		if slices.Contains(fresh, pv.UUID) {
			continue
		}
		if err := s.writeSlot(pv.UUID, header, payload); err != nil {
			return nil, err
		}
		failpointHit("lvm.commit.after-slot-write")
	}
	failpointHit("lvm.commit.done")
	return q, nil
}

// writeSlot writes one PV's spare slot.
func (s *Store) writeSlot(u UUID, header, payload []byte) error {
	d, l := s.Disks[u], s.labels[u]
	name := diskName(d)
	target := 0
	if s.live[u] == 0 {
		target = 1
	}
	off := int64(l.slotStart(target).Bytes())
	if _, err := d.WriteAt(payload, off+slotHeaderSize); err != nil {
		return fmt.Errorf("%s: write metadata slot %c: %w", name, 'A'+target, err)
	}
	if err := d.Sync(); err != nil {
		return fmt.Errorf("%s: sync: %w", name, err)
	}
	failpointHit("lvm.commit.after-payload")
	if failpoint.Armed("lvm.commit.torn-header") {
		d.WriteAt(header[:slotHeaderSize/2], off)
		d.Sync()
		failpoint.Exit("lvm.commit.torn-header")
	}
	if _, err := d.WriteAt(header, off); err != nil {
		return fmt.Errorf("%s: write metadata slot %c header: %w", name, 'A'+target, err)
	}
	if err := d.Sync(); err != nil {
		return fmt.Errorf("%s: sync: %w", name, err)
	}
	s.live[u] = target
	return nil
}

// Extend adds disks as new PVs and commits the result: the new PVs get
// their metadata and label first, then every old PV its new slot, so that
// Load over all disks finds the extended pool after any crash. The checks
// of [Create] apply to the new disks. Extend refuses while PVs are
// missing.
func (s *Store) Extend(disks []Disk, opts CreateOptions) error {
	if len(s.Missing) > 0 {
		return fmt.Errorf("extend pool %s: %d PVs missing: %w", s.Pool.Name, len(s.Missing), ErrMissingPV)
	}
	if len(disks) == 0 {
		return fmt.Errorf("extend pool %s: no devices", s.Pool.Name)
	}
	next := s.Pool.Clone()
	var fresh []UUID
	labels := map[UUID]Label{}
	for _, d := range disks {
		pv, l, err := newPV(next, d, opts)
		if err != nil {
			return fmt.Errorf("extend pool %s: %w", s.Pool.Name, err)
		}
		next.PVs = append(next.PVs, pv)
		fresh = append(fresh, pv.UUID)
		labels[pv.UUID] = l
	}
	for u, l := range labels {
		s.labels[u] = l
		s.Disks[u] = disks[slices.Index(fresh, u)]
	}
	q, err := s.commit(next, fresh)
	if err != nil {
		for _, u := range fresh {
			delete(s.labels, u)
			delete(s.Disks, u)
			delete(s.live, u)
		}
		return fmt.Errorf("extend pool %s: %w", s.Pool.Name, err)
	}
	s.Pool = q
	return nil
}

// Label returns the label of the PV u, if s has it.
func (s *Store) Label(u UUID) (Label, bool) {
	l, ok := s.labels[u]
	return l, ok
}
