package main

import (
	"fmt"
	"io"
	"strings"
)

// File type bits of a cpio mode, as in <sys/stat.h>.
const (
	cpioModeDir     = 0o040000
	cpioModeRegular = 0o100000
	cpioModeSymlink = 0o120000
	cpioModeCharDev = 0o020000
)

// cpioWriter writes a cpio archive in the "newc" (SVR4, no checksum)
// format that the Linux initramfs unpacker reads. Entries carry uid/gid 0
// and mtime 0 so archives are reproducible. Archives may be concatenated:
// the kernel unpacks each one in turn.
type cpioWriter struct {
	w      io.Writer
	n      int64 // bytes written
	ino    uint32
	closed bool
}

func newCpioWriter(w io.Writer) *cpioWriter { return &cpioWriter{w: w, ino: 1} }

// cpioHeader describes one entry.
type cpioHeader struct {
	Name     string // path inside the archive, without leading "/"
	Mode     uint32 // type bits | permissions
	Size     int64  // data length for regular files and symlinks
	RdevMaj  uint32 // device numbers for device nodes
	RdevMin  uint32
	NumLinks uint32
}

func (c *cpioWriter) write(p []byte) error {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return err
}

func (c *cpioWriter) pad(align int64) error {
	if r := c.n % align; r != 0 {
		return c.write(make([]byte, align-r))
	}
	return nil
}

// writeHeader writes h; the caller then writes exactly h.Size bytes with
// writeData.
func (c *cpioWriter) writeHeader(h cpioHeader) error {
	if c.closed {
		return fmt.Errorf("cpio: write after close")
	}
	name := strings.TrimPrefix(h.Name, "/")
	if name == "" {
		return fmt.Errorf("cpio: empty name")
	}
	nlink := h.NumLinks
	if nlink == 0 {
		nlink = 1
		if h.Mode&0o170000 == cpioModeDir {
			nlink = 2
		}
	}
	ino := c.ino
	c.ino++
	if name == "TRAILER!!!" {
		ino, nlink = 0, 1
	}
	hdr := fmt.Sprintf("070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		ino, h.Mode, 0, 0, nlink, 0, uint32(h.Size), 0, 0, h.RdevMaj, h.RdevMin, len(name)+1, 0)
	if err := c.write([]byte(hdr + name + "\x00")); err != nil {
		return err
	}
	return c.pad(4)
}

// writeData writes entry data and the padding after it.
func (c *cpioWriter) writeData(data []byte) error {
	if err := c.write(data); err != nil {
		return err
	}
	return c.pad(4)
}

// Dir adds a directory.
func (c *cpioWriter) Dir(name string, perm uint32) error {
	return c.writeHeader(cpioHeader{Name: name, Mode: cpioModeDir | perm})
}

// File adds a regular file with the given contents.
func (c *cpioWriter) File(name string, perm uint32, data []byte) error {
	if err := c.writeHeader(cpioHeader{Name: name, Mode: cpioModeRegular | perm, Size: int64(len(data))}); err != nil {
		return err
	}
	return c.writeData(data)
}

// Symlink adds a symbolic link name -> target.
func (c *cpioWriter) Symlink(name, target string) error {
	if err := c.writeHeader(cpioHeader{Name: name, Mode: cpioModeSymlink | 0o777, Size: int64(len(target))}); err != nil {
		return err
	}
	return c.writeData([]byte(target))
}

// CharDev adds a character device node.
func (c *cpioWriter) CharDev(name string, perm, major, minor uint32) error {
	return c.writeHeader(cpioHeader{Name: name, Mode: cpioModeCharDev | perm, RdevMaj: major, RdevMin: minor})
}

// Close writes the trailer and pads the archive to 512 bytes. It does not
// close the underlying writer.
func (c *cpioWriter) Close() error {
	if c.closed {
		return nil
	}
	if err := c.writeHeader(cpioHeader{Name: "TRAILER!!!"}); err != nil {
		return err
	}
	c.closed = true
	return c.pad(512)
}
