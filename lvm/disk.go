package lvm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/dmsnap/dmsnap/dm"
)

// Disk is a device or image file holding a PV. Sync must not return before
// every completed WriteAt is durable.
type Disk interface {
	io.ReaderAt
	io.WriterAt
	Sync() error
	Size() int64
}

// diskName returns d's name for messages: Name() when d has one.
func diskName(d Disk) string {
	if n, ok := d.(interface{ Name() string }); ok {
		return n.Name()
	}
	return fmt.Sprintf("disk %p", d)
}

// FileDisk is a [Disk] over an open file or block device. It owns the file.
type FileDisk struct {
	f    *os.File
	size int64
}

// OpenDisk opens a block device or image file as a [Disk], read-write when
// writable is set. The caller must Close it.
func OpenDisk(path string, writable bool) (*FileDisk, error) {
	flag := os.O_RDONLY
	if writable {
		flag = os.O_RDWR
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return nil, err
	}
	// Stat reports 0 for block devices; seeking to the end works for both.
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("size of %s: %w", path, err)
	}
	return &FileDisk{f: f, size: size}, nil
}

// CreateImage creates a sparse image file of size sectors for a file-backed
// PV. It refuses to overwrite an existing file.
func CreateImage(path string, size dm.Sector) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if err := f.Truncate(int64(size.Bytes())); err != nil {
		f.Close()
		return errors.Join(fmt.Errorf("size %s: %w", path, err), os.Remove(path))
	}
	return f.Close()
}

// Name returns the path the disk was opened at.
func (d *FileDisk) Name() string { return d.f.Name() }

// ReadAt implements io.ReaderAt.
func (d *FileDisk) ReadAt(b []byte, off int64) (int, error) { return d.f.ReadAt(b, off) }

// WriteAt implements io.WriterAt.
func (d *FileDisk) WriteAt(b []byte, off int64) (int, error) { return d.f.WriteAt(b, off) }

// Sync flushes the file or device.
func (d *FileDisk) Sync() error { return d.f.Sync() }

// Size returns the size in bytes when the disk was opened.
func (d *FileDisk) Size() int64 { return d.size }

// Close closes the file. It is idempotent.
func (d *FileDisk) Close() error {
	if d.f == nil {
		return nil
	}
	err := d.f.Close()
	d.f = nil
	return err
}

// ErrSignature is wrapped by [SignatureError].
var ErrSignature = errors.New("device holds data")

// SignatureError reports a filesystem, partition table or volume manager
// signature found where a PV would be created. It matches [ErrSignature];
// when the device is a PV of another dmsnap pool it matches [ErrInUse] too.
type SignatureError struct {
	Disk   string
	What   string // "ext2/3/4 filesystem", "dmsnap PV of pool vg0", ...
	inPool bool
}

func (e *SignatureError) Error() string {
	return fmt.Sprintf("%s: holds a %s (use --force to overwrite)", e.Disk, e.What)
}

// Is matches [ErrSignature], and [ErrInUse] for PVs of another pool.
func (e *SignatureError) Is(target error) bool {
	return target == ErrSignature || (e.inPool && target == ErrInUse)
}

// readFull reads len(b) bytes at off; bytes beyond the end read as zero.
func readFull(d Disk, b []byte, off int64) error {
	n, err := d.ReadAt(b, off)
	if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) {
		clear(b[n:])
		return nil
	}
	return err
}

// DetectSignature looks for data dmsnap must not silently overwrite: ext2/3/4
// (magic 0xEF53 at byte 1080), XFS ("XFSB" at 0), btrfs ("_BHRfS_M" at
// 65600), swap ("SWAPSPACE2" at 4086), an LVM2 PV ("LABELONE" in sectors
// 0-3), a GPT ("EFI PART" at 512), an MBR/boot sector (0x55AA at 510), or a
// dmsnap label. It returns a [*SignatureError], nil when the device looks
// unused, or the read error.
func DetectSignature(d Disk) error {
	head := make([]byte, 65600+8)
	if err := readFull(d, head, 0); err != nil {
		return fmt.Errorf("read %s: %w", diskName(d), err)
	}
	found := func(what string) error { return &SignatureError{Disk: diskName(d), What: what} }
	if l, err := decodeLabel(head[LabelOffset : LabelOffset+LabelSize]); err == nil {
		name := string(l.Pool)
		if p, _, err := readNewestSlot(d, l); err == nil {
			name = p.Name + " (" + string(l.Pool) + ")"
		}
		return &SignatureError{Disk: diskName(d), What: "dmsnap PV of pool " + name, inPool: true}
	} else if !errors.Is(err, ErrNoLabel) {
		return found("damaged dmsnap label")
	}
	switch {
	case binary.LittleEndian.Uint16(head[1080:]) == 0xEF53:
		return found("ext2/3/4 filesystem")
	case bytes.Equal(head[0:4], []byte("XFSB")):
		return found("XFS filesystem")
	case bytes.Equal(head[65600:65608], []byte("_BHRfS_M")):
		return found("btrfs filesystem")
	case bytes.Equal(head[4086:4096], []byte("SWAPSPACE2")), bytes.Equal(head[4086:4096], []byte("SWAP-SPACE")):
		return found("swap area")
	case bytes.Equal(head[512:520], []byte("EFI PART")):
		return found("GPT partition table")
	}
	for s := 0; s < 4; s++ {
		if bytes.Equal(head[s*512:s*512+8], []byte("LABELONE")) {
			return found("LVM2 physical volume")
		}
	}
	if head[510] == 0x55 && head[511] == 0xAA {
		return found("partition table or boot sector")
	}
	return nil
}
