package dm

import (
	"math/bits"
	"strconv"
	"strings"
)

// Target type names, as the kernel registers them.
const (
	TypeLinear         = "linear"
	TypeError          = "error"
	TypeZero           = "zero"
	TypeSnapshotOrigin = "snapshot-origin"
	TypeSnapshot       = "snapshot"
	TypeSnapshotMerge  = "snapshot-merge"
)

// Target is the typed form of one target's constructor parameters. Type is
// the kernel target name, Params the parameter string exactly as the kernel
// prints it in a table (dmsetup table), and Validate checks the rules the
// kernel's constructor enforces, returning an error wrapping
// [ErrInvalidTable].
//
// The implementations in this package are Linear, Error, Zero,
// SnapshotOrigin, Snapshot and SnapshotMerge; they are comparable values.
type Target interface {
	Type() string
	Params() string
	Validate() error
}

// Linear maps onto a range of another device.
//
// Table: "<dev> <offset>" (Documentation/admin-guide/device-mapper/linear.rst).
type Linear struct {
	Dev    DevNum // backing device
	Offset Sector // first sector used on Dev
}

// Type returns "linear".
func (Linear) Type() string { return TypeLinear }

// Params returns "<maj:min> <offset>".
func (l Linear) Params() string {
	b := appendDev(make([]byte, 0, 32), l.Dev)
	b = append(b, ' ')
	return string(strconv.AppendUint(b, uint64(l.Offset), 10))
}

// Validate checks that l names a device.
func (l Linear) Validate() error {
	if l.Dev.IsZero() {
		return invalidf("linear: no device")
	}
	return nil
}

// Error fails every I/O. It takes no parameters. LVM2 swaps a snapshot LV
// to it while the snapshot merges.
type Error struct{}

// Type returns "error".
func (Error) Type() string { return TypeError }

// Params returns "".
func (Error) Params() string { return "" }

// Validate always succeeds.
func (Error) Validate() error { return nil }

// Zero reads zeroes and discards writes. It takes no parameters.
type Zero struct{}

// Type returns "zero".
func (Zero) Type() string { return TypeZero }

// Params returns "".
func (Zero) Params() string { return "" }

// Validate always succeeds.
func (Zero) Validate() error { return nil }

// SnapshotOrigin passes I/O to Origin and copies chunks out to every
// snapshot of Origin before they are overwritten.
//
// Table: "<origin_dev>", exactly one argument (K:drivers/md/dm-snap.c
// origin_ctr, v1.9.0).
type SnapshotOrigin struct {
	Origin DevNum // the real origin (LVM2's "<lv>-real")
}

// Type returns "snapshot-origin".
func (SnapshotOrigin) Type() string { return TypeSnapshotOrigin }

// Params returns "<maj:min>".
func (o SnapshotOrigin) Params() string { return string(appendDev(make([]byte, 0, 24), o.Origin)) }

// Validate checks that o names a device.
func (o SnapshotOrigin) Validate() error {
	if o.Origin.IsZero() {
		return invalidf("snapshot-origin: no origin device")
	}
	return nil
}

// StoreType is the exception store of a snapshot, as the table names it.
type StoreType string

// Exception store types (Documentation/admin-guide/device-mapper/snapshot.rst).
const (
	// Persistent keeps the exceptions on the COW device; the snapshot
	// survives reactivation and can be merged. A full store invalidates
	// the snapshot.
	Persistent StoreType = "P"
	// Transient keeps the exceptions in memory only; it cannot be merged.
	Transient StoreType = "N"
	// PersistentOverflow is Persistent, but a snapshot filled by writes to
	// itself reports Overflow instead of becoming invalid (snapshot target
	// 1.15.0+).
	PersistentOverflow StoreType = "PO"
)

// Valid reports whether s is one of the three store types.
func (s StoreType) Valid() bool {
	return s == Persistent || s == Transient || s == PersistentOverflow
}

// IsPersistent reports whether s stores its exceptions on the COW device.
func (s StoreType) IsPersistent() bool { return s == Persistent || s == PersistentOverflow }

// Chunk sizes. The kernel accepts any power of two up to INT_MAX>>9 sectors
// that is a multiple of the logical block size of both devices
// (K:drivers/md/dm-exception-store.c dm_exception_store_set_chunk_size);
// dmsnap creates new snapshots only with LVM2's range, 4 KiB to 512 KiB,
// which is a multiple of every logical block size Linux supports.
const (
	MinChunkSectors Sector = 8
	MaxChunkSectors Sector = 1024
	// DefaultChunkSectors is LVM2's default, 4 KiB.
	DefaultChunkSectors Sector = 8

	maxKernelChunkSectors Sector = (1<<31 - 1) >> 9
)

// CheckChunkSectors checks the chunk size of a snapshot dmsnap is about to
// create: a power of two from [MinChunkSectors] to [MaxChunkSectors]. Tables
// read from the kernel may use any size the kernel accepts; only
// [Snapshot.Validate] applies to them. The error wraps [ErrInvalidTable].
func CheckChunkSectors(n Sector) error {
	if n < MinChunkSectors || n > MaxChunkSectors || bits.OnesCount64(uint64(n)) != 1 {
		return invalidf("chunk size %d sectors: must be a power of two from %d to %d", n, MinChunkSectors, MaxChunkSectors)
	}
	return nil
}

// Snapshot presents Origin as it was when the snapshot was activated,
// keeping the original chunks on COW.
//
// Table (K:drivers/md/dm-snap.c snapshot_ctr, v1.16.0):
//
//	<origin_dev> <cow_dev> <P|N|PO> <chunk_sectors> [<#features> <feature>...]
//
// The fields:
//
//   - origin_dev: the real origin (LVM2's "<lv>-real"), not the
//     snapshot-origin device above it.
//   - cow_dev: the exception store; must differ from origin_dev.
//   - P|N|PO: [StoreType].
//   - chunk_sectors: a power of two, at most INT_MAX>>9; the kernel prints
//     the effective size, which a persistent COW header may override.
//   - features (Linux 5.3+, target 1.16.0): a count, then
//     discard_zeroes_cow and/or discard_passdown_origin, printed in that
//     order; passdown depends on zeroes_cow.
type Snapshot struct {
	Origin                DevNum
	COW                   DevNum
	Store                 StoreType
	ChunkSectors          Sector
	DiscardZeroesCOW      bool // discard_zeroes_cow
	DiscardPassdownOrigin bool // discard_passdown_origin; needs DiscardZeroesCOW
}

// Type returns "snapshot".
func (Snapshot) Type() string { return TypeSnapshot }

// Params returns the table parameters, features last in kernel order.
func (s Snapshot) Params() string { return string(appendSnapshotParams(make([]byte, 0, 96), s)) }

// Validate checks the rules of the kernel constructor.
func (s Snapshot) Validate() error { return validateSnapshot(TypeSnapshot, s) }

// SnapshotMerge merges COW back into Origin while presenting the merged
// view. It takes over the role of the snapshot-origin device and the
// exceptions of the live snapshot that uses the same COW.
//
// Table: as [Snapshot] (same constructor, K:dm-snap.c merge_target), but the
// store must be persistent (P or PO), since only that store implements
// merging. Convert with SnapshotMerge(snap) and back with Snapshot(merge).
type SnapshotMerge Snapshot

// Type returns "snapshot-merge".
func (SnapshotMerge) Type() string { return TypeSnapshotMerge }

// Params returns the table parameters, as for [Snapshot].
func (m SnapshotMerge) Params() string {
	return string(appendSnapshotParams(make([]byte, 0, 96), Snapshot(m)))
}

// Validate checks the rules of the kernel constructor, including a
// persistent store.
func (m SnapshotMerge) Validate() error {
	if err := validateSnapshot(TypeSnapshotMerge, Snapshot(m)); err != nil {
		return err
	}
	if !m.Store.IsPersistent() {
		return invalidf("snapshot-merge: store %q cannot merge, need P or PO", string(m.Store))
	}
	return nil
}

const (
	featureDiscardZeroesCOW      = "discard_zeroes_cow"
	featureDiscardPassdownOrigin = "discard_passdown_origin"
)

func validateSnapshot(typ string, s Snapshot) error {
	switch {
	case s.Origin.IsZero():
		return invalidf("%s: no origin device", typ)
	case s.COW.IsZero():
		return invalidf("%s: no COW device", typ)
	case s.Origin == s.COW:
		return invalidf("%s: COW device %s is the origin device", typ, s.COW)
	case !s.Store.Valid():
		return invalidf("%s: store type %q is not P, N or PO", typ, string(s.Store))
	case s.ChunkSectors == 0 || bits.OnesCount64(uint64(s.ChunkSectors)) != 1:
		return invalidf("%s: chunk size %d sectors is not a power of two", typ, s.ChunkSectors)
	case s.ChunkSectors > maxKernelChunkSectors:
		return invalidf("%s: chunk size %d sectors is above the kernel limit %d", typ, s.ChunkSectors, maxKernelChunkSectors)
	case s.DiscardPassdownOrigin && !s.DiscardZeroesCOW:
		return invalidf("%s: %s depends on %s", typ, featureDiscardPassdownOrigin, featureDiscardZeroesCOW)
	}
	return nil
}

func appendDev(b []byte, d DevNum) []byte {
	b = strconv.AppendUint(b, uint64(d.Major), 10)
	b = append(b, ':')
	return strconv.AppendUint(b, uint64(d.Minor), 10)
}

func appendSnapshotParams(b []byte, s Snapshot) []byte {
	b = appendDev(b, s.Origin)
	b = append(b, ' ')
	b = appendDev(b, s.COW)
	b = append(b, ' ')
	b = append(b, s.Store...)
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(s.ChunkSectors), 10)
	n := 0
	if s.DiscardZeroesCOW {
		n++
	}
	if s.DiscardPassdownOrigin {
		n++
	}
	if n == 0 {
		return b
	}
	b = append(b, ' ')
	b = strconv.AppendInt(b, int64(n), 10)
	if s.DiscardZeroesCOW {
		b = append(b, " "+featureDiscardZeroesCOW...)
	}
	if s.DiscardPassdownOrigin {
		b = append(b, " "+featureDiscardPassdownOrigin...)
	}
	return b
}

// ParseDevNum parses "major:minor" as tables print device numbers. Paths
// such as "/dev/loop0" are refused: the kernel prints tables with numbers
// only. The error wraps [ErrSyntax] and quotes s.
func ParseDevNum(s string) (DevNum, error) {
	majText, minText, ok := strings.Cut(s, ":")
	if !ok {
		return DevNum{}, syntaxErrorf("device %q is not major:minor", s)
	}
	ma, err1 := parseUint32(majText)
	mi, err2 := parseUint32(minText)
	if err1 != nil || err2 != nil {
		return DevNum{}, syntaxErrorf("device %q is not major:minor", s)
	}
	return DevNum{Major: ma, Minor: mi}, nil
}

func parseUint32(s string) (uint32, error) {
	// Base 10: decimal digits only, no sign, no "0x".
	v, err := strconv.ParseUint(s, 10, 32)
	return uint32(v), err
}

// parseSector parses a decimal sector count; what names the field.
func parseSector(what, s string) (Sector, error) {
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, syntaxErrorf("%s %q is not a decimal number", what, s)
	}
	return Sector(v), nil
}

// targetParsers turns the whitespace-split parameters of each known target
// type into a Target; validation happens in ParseTarget.
var targetParsers = map[string]func(args []string) (Target, error){
	TypeLinear:         parseLinear,
	TypeError:          func(args []string) (Target, error) { return Error{}, noArgs(args) },
	TypeZero:           func(args []string) (Target, error) { return Zero{}, noArgs(args) },
	TypeSnapshotOrigin: parseSnapshotOrigin,
	TypeSnapshot: func(args []string) (Target, error) {
		return parseSnapshot(args)
	},
	TypeSnapshotMerge: func(args []string) (Target, error) {
		s, err := parseSnapshot(args)
		return SnapshotMerge(s), err
	},
}

func noArgs(args []string) error {
	if len(args) != 0 {
		return syntaxErrorf("want no arguments, have %d", len(args))
	}
	return nil
}

func parseLinear(args []string) (Target, error) {
	if len(args) != 2 {
		return nil, syntaxErrorf("want 2 arguments <dev> <offset>, have %d", len(args))
	}
	dev, err := ParseDevNum(args[0])
	if err != nil {
		return nil, err
	}
	off, err := parseSector("offset", args[1])
	if err != nil {
		return nil, err
	}
	return Linear{Dev: dev, Offset: off}, nil
}

func parseSnapshotOrigin(args []string) (Target, error) {
	if len(args) != 1 {
		return nil, syntaxErrorf("want 1 argument <origin_dev>, have %d", len(args))
	}
	dev, err := ParseDevNum(args[0])
	if err != nil {
		return nil, err
	}
	return SnapshotOrigin{Origin: dev}, nil
}

func parseSnapshot(args []string) (Snapshot, error) {
	var s Snapshot
	if len(args) < 4 {
		return s, syntaxErrorf("want at least 4 arguments, have %d", len(args))
	}
	var err error
	if s.Origin, err = ParseDevNum(args[0]); err != nil {
		return Snapshot{}, err
	}
	if s.COW, err = ParseDevNum(args[1]); err != nil {
		return Snapshot{}, err
	}
	s.Store = StoreType(args[2])
	if !s.Store.Valid() {
		return Snapshot{}, syntaxErrorf("store type %q is not P, N or PO", args[2])
	}
	if s.ChunkSectors, err = parseSector("chunk size", args[3]); err != nil {
		return Snapshot{}, err
	}
	if len(args) == 4 {
		return s, nil
	}
	n, err := strconv.ParseUint(args[4], 10, 8)
	if err != nil || n > 2 {
		return Snapshot{}, syntaxErrorf("feature count %q is not 0, 1 or 2", args[4])
	}
	feats := args[5:]
	if uint64(len(feats)) != n {
		return Snapshot{}, syntaxErrorf("feature count %d, but %d features follow", n, len(feats))
	}
	for _, f := range feats {
		var p *bool
		switch {
		case strings.EqualFold(f, featureDiscardZeroesCOW):
			p = &s.DiscardZeroesCOW
		case strings.EqualFold(f, featureDiscardPassdownOrigin):
			p = &s.DiscardPassdownOrigin
		default:
			return Snapshot{}, syntaxErrorf("unknown snapshot feature %q", f)
		}
		if *p {
			return Snapshot{}, syntaxErrorf("snapshot feature %q repeated", f)
		}
		*p = true
	}
	return s, nil
}
