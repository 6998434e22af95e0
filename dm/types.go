package dm

import "fmt"

// Sector is a count or offset of 512-byte sectors, the unit of every
// device-mapper table and status line.
type Sector uint64

// SectorSize is the size of a Sector in bytes.
const SectorSize = 512

// Bytes returns s in bytes.
func (s Sector) Bytes() uint64 { return uint64(s) * SectorSize }

// DevNum is a block device number. Tables name devices as "major:minor"
// so that no device node is needed (LVM2 does the same).
type DevNum struct {
	Major, Minor uint32
}

// String formats d as "major:minor".
func (d DevNum) String() string { return fmt.Sprintf("%d:%d", d.Major, d.Minor) }

// IsZero reports whether d is the zero device number.
func (d DevNum) IsZero() bool { return d.Major == 0 && d.Minor == 0 }

// TargetLine is one line of a table or status as the kernel exchanges it:
// a start and length in sectors, a target type and its parameter string.
// It is the raw form; typed targets (Linear, Snapshot, ...) convert to and
// from it.
type TargetLine struct {
	Start  Sector
	Length Sector
	Type   string
	Params string
}

// String formats l as dmsetup prints it: "<start> <length> <type> <params>".
func (l TargetLine) String() string {
	if l.Params == "" {
		return fmt.Sprintf("%d %d %s", l.Start, l.Length, l.Type)
	}
	return fmt.Sprintf("%d %d %s %s", l.Start, l.Length, l.Type, l.Params)
}
