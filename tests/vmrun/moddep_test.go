package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// A modules.dep excerpt in depmod's format (Debian 6.1 layout).
const sampleModulesDep = `kernel/drivers/md/dm-mod.ko:
kernel/drivers/md/dm-bufio.ko: kernel/drivers/md/dm-mod.ko
kernel/drivers/md/dm-snapshot.ko: kernel/drivers/md/dm-bufio.ko kernel/drivers/md/dm-mod.ko
kernel/drivers/virtio/virtio.ko:
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/fs/netfs/netfs.ko:
kernel/fs/fscache/fscache.ko: kernel/fs/netfs/netfs.ko
kernel/net/9p/9pnet.ko:
kernel/net/9p/9pnet_virtio.ko: kernel/net/9p/9pnet.ko kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/fs/9p/9p.ko: kernel/fs/fscache/fscache.ko kernel/net/9p/9pnet.ko kernel/fs/netfs/netfs.ko
kernel/drivers/block/loop.ko.xz:
`

func TestLoadOrder(t *testing.T) {
	m, err := parseModulesDep(sampleModulesDep, "kernel/fs/overlayfs/overlay.ko\n", "")
	if err != nil {
		t.Fatal(err)
	}
	got, err := m.loadOrder([]string{"dm-snapshot", "loop", "virtio_pci", "9pnet_virtio", "9p", "overlay"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"dm_mod", "dm_bufio", "dm_snapshot", "loop",
		"virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_pci",
		"9pnet", "9pnet_virtio", "netfs", "fscache", "9p",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("order = %v\nwant    %v", got, want)
	}
	// Every module comes after all of its dependencies.
	pos := map[string]int{}
	for i, n := range got {
		pos[n] = i
	}
	for _, n := range got {
		for _, d := range m.deps[n] {
			if pos[d] > pos[n] {
				t.Errorf("%s loaded before its dependency %s", n, d)
			}
		}
	}

	// Already loaded modules are skipped.
	got, err = m.loadOrder([]string{"dm_snapshot"}, map[string]bool{"dm_mod": true, "dm_bufio": true})
	if err != nil || !reflect.DeepEqual(got, []string{"dm_snapshot"}) {
		t.Errorf("with loaded set: %v, %v", got, err)
	}
	if _, err := m.loadOrder([]string{"zfs"}, nil); !errors.Is(err, errNoModule) {
		t.Errorf("unknown module: err = %v, want errNoModule", err)
	}
	if m.file["loop"] != "kernel/drivers/block/loop.ko.xz" {
		t.Errorf("loop file = %q", m.file["loop"])
	}
}

func TestLoadOrderCycle(t *testing.T) {
	m, err := parseModulesDep("a.ko: b.ko\nb.ko: a.ko\n", "", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.loadOrder([]string{"a"}, nil); err == nil {
		t.Error("cycle not reported")
	}
	if _, err := parseModulesDep("no colon here\n", "", ""); err == nil {
		t.Error("malformed modules.dep accepted")
	}
}

func TestModuleName(t *testing.T) {
	for in, want := range map[string]string{
		"kernel/drivers/md/dm-mod.ko":         "dm_mod",
		"dm-snapshot":                         "dm_snapshot",
		"fs/9p/9p.ko.xz":                      "9p",
		"/lib/modules/x/updates/zfs.ko":       "zfs",
		"kernel/crypto/crc32c_generic.ko.zst": "crc32c_generic",
	} {
		if got := moduleName(in); got != want {
			t.Errorf("moduleName(%q) = %q, want %q", in, got, want)
		}
	}
}

// writeFakeModule writes a minimal ELF64 file whose only contents are a
// .modinfo section holding the given NUL-separated strings.
func writeFakeModule(t *testing.T, path string, modinfo ...string) {
	t.Helper()
	var info bytes.Buffer
	for _, s := range modinfo {
		info.WriteString(s + "\x00")
	}
	shstr := []byte("\x00.modinfo\x00.shstrtab\x00")
	const ehsize, shentsize = 64, 64
	infoOff := uint64(ehsize)
	strOff := infoOff + uint64(info.Len())
	shOff := (strOff + uint64(len(shstr)) + 7) &^ 7
	var b bytes.Buffer
	le := binary.LittleEndian
	b.Write([]byte{0x7f, 'E', 'L', 'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	binary.Write(&b, le, uint16(1))  // ET_REL
	binary.Write(&b, le, uint16(62)) // EM_X86_64
	binary.Write(&b, le, uint32(1))  // version
	binary.Write(&b, le, uint64(0))  // entry
	binary.Write(&b, le, uint64(0))  // phoff
	binary.Write(&b, le, shOff)      // shoff
	binary.Write(&b, le, uint32(0))  // flags
	binary.Write(&b, le, uint16(ehsize))
	binary.Write(&b, le, uint16(0)) // phentsize
	binary.Write(&b, le, uint16(0)) // phnum
	binary.Write(&b, le, uint16(shentsize))
	binary.Write(&b, le, uint16(3)) // shnum
	binary.Write(&b, le, uint16(2)) // shstrndx
	b.Write(info.Bytes())
	b.Write(shstr)
	for uint64(b.Len()) < shOff {
		b.WriteByte(0)
	}
	sh := func(name, typ uint32, off, size uint64) {
		binary.Write(&b, le, name)
		binary.Write(&b, le, typ)
		binary.Write(&b, le, uint64(0)) // flags
		binary.Write(&b, le, uint64(0)) // addr
		binary.Write(&b, le, off)
		binary.Write(&b, le, size)
		binary.Write(&b, le, uint32(0)) // link
		binary.Write(&b, le, uint32(0)) // info
		binary.Write(&b, le, uint64(1)) // addralign
		binary.Write(&b, le, uint64(0)) // entsize
	}
	sh(0, 0, 0, 0)
	sh(1, 1, infoOff, uint64(info.Len())) // .modinfo, SHT_PROGBITS
	sh(10, 3, strOff, uint64(len(shstr))) // .shstrtab, SHT_STRTAB
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestGenModulesDep(t *testing.T) {
	dir := t.TempDir()
	writeFakeModule(t, filepath.Join(dir, "kernel/drivers/md/dm-mod.ko"), "license=GPL", "depends=", "name=dm_mod")
	writeFakeModule(t, filepath.Join(dir, "kernel/drivers/md/dm-bufio.ko"), "depends=dm-mod", "name=dm_bufio")
	writeFakeModule(t, filepath.Join(dir, "kernel/drivers/md/dm-snapshot.ko"), "depends=dm-bufio,dm-mod", "name=dm_snapshot")
	writeFakeModule(t, filepath.Join(dir, "kernel/fs/9p/9p.ko"), "depends=9pnet,netfs")
	writeFakeModule(t, filepath.Join(dir, "kernel/net/9p/9pnet.ko"), "depends=")
	writeFakeModule(t, filepath.Join(dir, "kernel/fs/netfs/netfs.ko"))
	writeFakeModule(t, filepath.Join(dir, "kernel/lib/libcrc32c.ko"), "softdep=pre: crc32c post: nothing", "depends=", "name=libcrc32c")
	writeFakeModule(t, filepath.Join(dir, "kernel/crypto/crc32c_generic.ko"), "alias=crypto-crc32c", "alias=crc32c")
	writeFakeModule(t, filepath.Join(dir, "kernel/arch/x86/crypto/crc32c-intel.ko"), "alias=crc32c", "name=crc32c_intel")

	info, err := readModinfo(filepath.Join(dir, "kernel/drivers/md/dm-snapshot.ko"))
	if err != nil || info.name != "dm_snapshot" || !reflect.DeepEqual(info.depends, []string{"dm_bufio", "dm_mod"}) {
		t.Fatalf("readModinfo = %+v, %v", info, err)
	}
	dep, soft, err := genModulesDep(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := `kernel/arch/x86/crypto/crc32c-intel.ko:
kernel/crypto/crc32c_generic.ko:
kernel/drivers/md/dm-bufio.ko: kernel/drivers/md/dm-mod.ko
kernel/drivers/md/dm-mod.ko:
kernel/drivers/md/dm-snapshot.ko: kernel/drivers/md/dm-bufio.ko kernel/drivers/md/dm-mod.ko
kernel/fs/9p/9p.ko: kernel/fs/netfs/netfs.ko kernel/net/9p/9pnet.ko
kernel/fs/netfs/netfs.ko:
kernel/lib/libcrc32c.ko:
kernel/net/9p/9pnet.ko:
`
	if dep != want {
		t.Errorf("modules.dep:\n%s\nwant:\n%s", dep, want)
	}
	if want := "libcrc32c: crc32c_generic\n"; soft != want {
		t.Errorf("softdep = %q, want %q", soft, want)
	}
	// Our own files feed the same parser; the soft dependency comes first.
	m, err := parseModulesDep(dep, "", soft)
	if err != nil {
		t.Fatal(err)
	}
	order, err := m.loadOrder([]string{"dm-snapshot", "9p", "libcrc32c"}, nil)
	want2 := []string{"dm_mod", "dm_bufio", "dm_snapshot", "9pnet", "netfs", "9p", "crc32c_generic", "libcrc32c"}
	if err != nil || !reflect.DeepEqual(order, want2) {
		t.Errorf("order = %v, %v; want %v", order, err, want2)
	}

	// A module outside the tree (dkms-style) brings its dependencies.
	zfs := filepath.Join(t.TempDir(), "updates", "zfs.ko")
	writeFakeModule(t, zfs, "depends=spl,libcrc32c", "name=zfs")
	spl := filepath.Join(filepath.Dir(zfs), "spl.ko")
	writeFakeModule(t, spl, "name=spl")
	for _, p := range []string{zfs, spl} {
		if _, err := m.addFile(p); err != nil {
			t.Fatal(err)
		}
	}
	order, err = m.loadOrder([]string{"zfs"}, map[string]bool{"dm_mod": true})
	want2 = []string{"crc32c_generic", "libcrc32c", "spl", "zfs"}
	if err != nil || !reflect.DeepEqual(order, want2) {
		t.Errorf("zfs order = %v, %v; want %v", order, err, want2)
	}
	if m.file["zfs"] != zfs {
		t.Errorf("zfs file = %q", m.file["zfs"])
	}
	if _, err := readModinfo(filepath.Join(dir, "missing.ko")); err == nil {
		t.Error("readModinfo of a missing file succeeded")
	}
}
