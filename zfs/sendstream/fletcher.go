package sendstream

import "encoding/binary"

// Checksum is a zio_cksum_t: four 64-bit words.
type Checksum [4]uint64

// IsZero reports whether c is all zero (a record that carries no checksum).
func (c Checksum) IsZero() bool { return c == Checksum{} }

func readChecksum(b []byte) Checksum {
	return Checksum{le.Uint64(b), le.Uint64(b[8:]), le.Uint64(b[16:]), le.Uint64(b[24:])}
}

// fletcher4 is OpenZFS's fletcher_4_incremental_native
// (module/zcommon/zfs_fletcher.c) as an io.Writer: over 32-bit
// little-endian words, a += w; b += a; c += b; d += c, modulo 2^64. A
// word split across Write calls is carried over; trailing bytes that do
// not make a word are ignored, as the C code ignores them.
type fletcher4 struct {
	a, b, c, d uint64
	part       [4]byte
	np         int
}

func (f *fletcher4) Write(p []byte) (int, error) {
	n := len(p)
	if f.np > 0 {
		k := copy(f.part[f.np:], p)
		f.np += k
		p = p[k:]
		if f.np < 4 {
			return n, nil
		}
		f.word(binary.LittleEndian.Uint32(f.part[:]))
		f.np = 0
	}
	a, b, c, d := f.a, f.b, f.c, f.d
	for len(p) >= 4 {
		a += uint64(binary.LittleEndian.Uint32(p))
		b += a
		c += b
		d += c
		p = p[4:]
	}
	f.a, f.b, f.c, f.d = a, b, c, d
	f.np = copy(f.part[:], p)
	return n, nil
}

func (f *fletcher4) word(w uint32) {
	f.a += uint64(w)
	f.b += f.a
	f.c += f.b
	f.d += f.c
}

// endPayload drops a partial word at the end of a payload.
func (f *fletcher4) endPayload() { f.np = 0 }

func (f *fletcher4) sum() Checksum { return Checksum{f.a, f.b, f.c, f.d} }

func (f *fletcher4) reset() { *f = fletcher4{} }
