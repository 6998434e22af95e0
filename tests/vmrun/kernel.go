package main

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
)

// baseModules are loaded in every guest: device-mapper and loop for the
// tests, then the virtio/9p/overlay chain for the host root. Their
// dependencies (virtio_ring, netfs, fscache, ...) come from modules.dep,
// because they differ between kernel versions.
var baseModules = []string{
	"dm-mod", "dm-bufio", "dm-snapshot", "dm-zero", "loop",
	"virtio_pci", "9pnet_virtio", "9p", "overlay",
}

// busyboxApplets are linked into the initramfs /bin for the generated /init.
var busyboxApplets = []string{
	"sh", "mount", "mkdir", "insmod", "stty", "chroot", "poweroff", "cat",
	"cp", "echo", "sync", "sleep", "ls", "dmesg", "umount",
}

// busyboxPath is the static busybox copied into the initramfs.
const busyboxPath = "/bin/busybox"

// cacheFormat is the first line of a kernel's ready file. Bump it when the
// content of a kernel directory changes, so old caches are rebuilt.
const cacheFormat = "vmrun-cache-2"

// Cache layout under the cache root (see doc.go).
const (
	lockFile        = "lock"
	aptDir          = "apt"
	readyFile       = "ready"
	vmlinuxFile     = "vmlinux"
	baseCpioFile    = "base.cpio"
	baseModulesFile = "base.modules"
	rootDir         = "root"
)

// kernelCache is one prepared kernel under <cache>/<release>.
type kernelCache struct {
	Release     string   // kernel release, e.g. 6.1.0-56-amd64
	Version     string   // Debian package version, e.g. 6.1.192-2
	Dir         string   // <cache>/<release>
	BaseModules []string // modules insmod'ed from base.cpio, in load order
}

func (k *kernelCache) vmlinux() string  { return filepath.Join(k.Dir, vmlinuxFile) }
func (k *kernelCache) baseCpio() string { return filepath.Join(k.Dir, baseCpioFile) }

// modulesDir returns /lib/modules/<release> inside the unpacked package.
func (k *kernelCache) modulesDir() string {
	return filepath.Join(k.Dir, rootDir, "lib", "modules", k.Release)
}

// deps parses the kernel's modules.dep and modules.builtin.
func (k *kernelCache) deps() (*moduleDeps, error) {
	dep, err := os.ReadFile(filepath.Join(k.modulesDir(), "modules.dep"))
	if err != nil {
		return nil, err
	}
	builtin, _ := os.ReadFile(filepath.Join(k.modulesDir(), "modules.builtin"))
	soft, _ := os.ReadFile(filepath.Join(k.modulesDir(), softdepFile))
	return parseModulesDep(string(dep), string(builtin), string(soft))
}

// pointerFile names the file holding the release last resolved for kernel.
func pointerFile(cache, kernel string) string {
	return filepath.Join(cache, "kernel-"+kernel)
}

// loadKernelCache opens a prepared kernel, or returns an error if the
// directory is not complete.
func loadKernelCache(cache, release string) (*kernelCache, error) {
	dir := filepath.Join(cache, release)
	rest, err := readReady(dir)
	if err != nil {
		return nil, err
	}
	mods, err := os.ReadFile(filepath.Join(dir, baseModulesFile))
	if err != nil {
		return nil, err
	}
	// The second line is "<package> <version>".
	var version string
	if f := strings.Fields(rest); len(f) >= 2 {
		version = f[1]
	}
	return &kernelCache{Release: release, Version: version, Dir: dir, BaseModules: strings.Fields(string(mods))}, nil
}

// prepareKernel returns the cached kernel for --kernel, preparing it first
// if needed. Without refresh, a cache named by the pointer file is used
// without running apt. Preparation holds an exclusive flock on
// <cache>/lock, builds in a temporary directory and renames it into place,
// so concurrent runners neither duplicate work nor see partial caches.
func prepareKernel(ctx context.Context, cache, kernel string, refresh bool, log io.Writer) (*kernelCache, error) {
	if !refresh {
		if k, err := cachedKernel(cache, kernel); err == nil {
			return k, nil
		}
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	unlock, err := lockPath(filepath.Join(cache, lockFile))
	if err != nil {
		return nil, err
	}
	defer unlock()
	if !refresh {
		// Another runner may have finished while this one waited.
		if k, err := cachedKernel(cache, kernel); err == nil {
			return k, nil
		}
	}
	// Builds left behind by a killed runner: only the lock holder builds.
	stale, _ := filepath.Glob(filepath.Join(cache, ".build-*"))
	for _, d := range stale {
		os.RemoveAll(d)
	}
	apt := &privateApt{dir: filepath.Join(cache, aptDir), log: log}
	if err := apt.init(); err != nil {
		return nil, fmt.Errorf("private apt: %w", err)
	}
	pkg, version, err := apt.resolveKernel(ctx, kernel, refresh)
	if err != nil {
		return nil, fmt.Errorf("resolve linux-image-amd64 (%s): %w", kernel, err)
	}
	release := strings.TrimPrefix(pkg, "linux-image-")
	fmt.Fprintf(log, "vmrun: %s kernel is %s %s\n", kernel, pkg, version)
	k, err := loadKernelCache(cache, release)
	if err != nil {
		k, err = buildKernelCache(ctx, cache, apt, pkg, version, release, log)
		if err != nil {
			return nil, fmt.Errorf("prepare %s: %w", pkg, err)
		}
	}
	if err := writeFileAtomic(pointerFile(cache, kernel), []byte(release+"\n"), 0o644); err != nil {
		return nil, err
	}
	return k, nil
}

// cachedKernel follows the pointer file of kernel.
func cachedKernel(cache, kernel string) (*kernelCache, error) {
	b, err := os.ReadFile(pointerFile(cache, kernel))
	if err != nil {
		return nil, err
	}
	return loadKernelCache(cache, strings.TrimSpace(string(b)))
}

// buildKernelCache downloads and unpacks pkg and fills <cache>/<release>.
func buildKernelCache(ctx context.Context, cache string, apt *privateApt, pkg, version, release string, log io.Writer) (*kernelCache, error) {
	tmp, err := os.MkdirTemp(cache, ".build-"+release+"-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	deb, err := apt.download(ctx, tmp, pkg, version)
	if err != nil {
		return nil, err
	}
	root := filepath.Join(tmp, rootDir)
	if out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", deb, root).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("dpkg-deb -x: %w: %s", err, bytes.TrimSpace(out))
	}
	if err := os.Remove(deb); err != nil {
		return nil, err
	}
	// Debian may ship modules under /usr/lib; normalize to /lib.
	modDir := filepath.Join(root, "lib", "modules", release)
	if _, err := os.Stat(modDir); err != nil {
		alt := filepath.Join(root, "usr", "lib", "modules", release)
		if _, err2 := os.Stat(alt); err2 != nil {
			return nil, fmt.Errorf("no modules directory for %s in %s", release, pkg)
		}
		if err := os.MkdirAll(filepath.Dir(modDir), 0o755); err != nil {
			return nil, err
		}
		if err := os.Rename(alt, modDir); err != nil {
			return nil, err
		}
	}
	fmt.Fprintf(log, "vmrun: extracting vmlinux\n")
	if err := extractVmlinux(ctx, filepath.Join(root, "boot", "vmlinuz-"+release), filepath.Join(tmp, vmlinuxFile)); err != nil {
		return nil, err
	}
	fmt.Fprintf(log, "vmrun: decompressing modules\n")
	if err := decompressModules(ctx, modDir); err != nil {
		return nil, err
	}
	// modules.dep is made by the package's postinst, not shipped.
	dep, soft, err := genModulesDep(modDir)
	if err != nil {
		return nil, fmt.Errorf("modules.dep: %w", err)
	}
	if err := os.WriteFile(filepath.Join(modDir, "modules.dep"), []byte(dep), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(modDir, softdepFile), []byte(soft), 0o644); err != nil {
		return nil, err
	}
	k := &kernelCache{Release: release, Version: version, Dir: tmp}
	deps, err := k.deps()
	if err != nil {
		return nil, err
	}
	order, err := deps.loadOrder(baseModules, nil)
	if err != nil {
		return nil, err
	}
	k.BaseModules = order
	if err := writeBaseCpio(k, deps); err != nil {
		return nil, fmt.Errorf("base initramfs: %w", err)
	}
	if err := os.WriteFile(filepath.Join(tmp, baseModulesFile), []byte(strings.Join(order, "\n")+"\n"), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(tmp, readyFile), []byte(cacheFormat+"\n"+pkg+" "+version+"\n"), 0o644); err != nil {
		return nil, err
	}
	final := filepath.Join(cache, release)
	if err := os.RemoveAll(final); err != nil { // a stale, incomplete copy
		return nil, err
	}
	if err := os.Chmod(tmp, 0o755); err != nil { // MkdirTemp made it 0700
		return nil, err
	}
	if err := os.Rename(tmp, final); err != nil {
		return nil, err
	}
	k.Dir = final
	return k, nil
}

// bzImage boot protocol offsets (Documentation/arch/x86/boot.rst).
const (
	bootSetupSects    = 0x1f1
	bootHeaderMagic   = 0x202 // "HdrS"
	bootPayloadOffset = 0x248 // from the start of the protected-mode code
	bootPayloadLength = 0x24c
)

// payloadDecompressor picks the command for a bzImage payload by its magic.
func payloadDecompressor(payload []byte) ([]string, error) {
	switch {
	case bytes.HasPrefix(payload, []byte("\xfd7zXZ\x00")):
		return []string{"xz", "-dc", "--single-stream"}, nil
	case bytes.HasPrefix(payload, []byte("\x28\xb5\x2f\xfd")):
		return []string{"zstd", "-dcq"}, nil
	case bytes.HasPrefix(payload, []byte("\x1f\x8b")):
		return []string{"gzip", "-dc"}, nil
	}
	return nil, fmt.Errorf("unknown kernel compression (magic % x)", payload[:min(6, len(payload))])
}

// extractVmlinux decompresses the ELF vmlinux out of a bzImage, which qemu
// then boots through PVH (much faster under TCG than the bzImage's own
// decompressor). The payload is located through the boot header; its last
// 4 bytes are the uncompressed size (the kernel build appends them), which
// is checked. Debian's 6.1 uses xz, 6.12 zstd.
func extractVmlinux(ctx context.Context, vmlinuz, out string) error {
	data, err := os.ReadFile(vmlinuz)
	if err != nil {
		return err
	}
	if len(data) < 0x250 || string(data[bootHeaderMagic:bootHeaderMagic+4]) != "HdrS" {
		return fmt.Errorf("%s: not a bzImage", vmlinuz)
	}
	setup := int(data[bootSetupSects])
	if setup == 0 {
		setup = 4
	}
	start := (setup+1)*512 + int(binary.LittleEndian.Uint32(data[bootPayloadOffset:]))
	length := int(binary.LittleEndian.Uint32(data[bootPayloadLength:]))
	if length < 8 || start+length > len(data) {
		return fmt.Errorf("%s: payload %d+%d outside the file", vmlinuz, start, length)
	}
	payload := data[start : start+length-4]
	size := int64(binary.LittleEndian.Uint32(data[start+length-4:]))
	argv, err := payloadDecompressor(payload)
	if err != nil {
		return fmt.Errorf("%s: %w", vmlinuz, err)
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdin = bytes.NewReader(payload)
	cmd.Stdout = f
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	runErr := cmd.Run()
	if err := errors.Join(f.Close(), runErr); err != nil {
		return fmt.Errorf("%s: %w: %s", argv[0], err, bytes.TrimSpace(stderr.Bytes()))
	}
	st, err := os.Stat(out)
	if err != nil {
		return err
	}
	if st.Size() != size {
		return fmt.Errorf("vmlinux: %d bytes, boot header says %d", st.Size(), size)
	}
	ef, err := elf.Open(out)
	if err != nil {
		return fmt.Errorf("vmlinux: %w", err)
	}
	return ef.Close()
}

// decompressModules decompresses every .ko.xz under dir in place (6.12
// ships compressed modules; 6.1 does not), so the guest loads plain .ko.
func decompressModules(ctx context.Context, dir string) error {
	var files []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".ko.xz") {
			files = append(files, p)
		}
		return nil
	})
	if err != nil || len(files) == 0 {
		return err
	}
	const batch = 200
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
		sem  = make(chan struct{}, 2)
	)
	for i := 0; i < len(files); i += batch {
		part := files[i:min(i+batch, len(files))]
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			out, err := exec.CommandContext(ctx, "xz", append([]string{"-d", "-f", "--"}, part...)...).CombinedOutput()
			if err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("xz -d: %w: %s", err, bytes.TrimSpace(out)))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// moduleFile returns the host path of a module's (decompressed) .ko.
func (k *kernelCache) moduleFile(deps *moduleDeps, name string) (string, error) {
	rel, ok := deps.file[name]
	if !ok {
		return "", fmt.Errorf("%w: %s", errNoModule, name)
	}
	p := rel
	if !filepath.IsAbs(rel) {
		rel = strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(rel, ".xz"), ".zst"), ".gz")
		p = filepath.Join(k.modulesDir(), rel)
	}
	if _, err := os.Stat(p); err != nil {
		return "", err
	}
	return p, nil
}

// writeBaseCpio writes base.cpio: the directory skeleton, /dev/console,
// static busybox with applet links, and the base modules under /modules.
func writeBaseCpio(k *kernelCache, deps *moduleDeps) error {
	bb, err := os.ReadFile(busyboxPath)
	if err != nil {
		return fmt.Errorf("busybox (install busybox-static): %w", err)
	}
	if err := checkStatic(busyboxPath); err != nil {
		return err
	}
	f, err := os.Create(k.baseCpio())
	if err != nil {
		return err
	}
	defer f.Close()
	w := newCpioWriter(f)
	for _, d := range []string{"bin", "dev", "proc", "sys", "lower", "upper", "newroot", "modules", "vmrun", "run", "tmp"} {
		if err := w.Dir(d, 0o755); err != nil {
			return err
		}
	}
	if err := w.CharDev("dev/console", 0o600, 5, 1); err != nil {
		return err
	}
	if err := w.File("bin/busybox", 0o755, bb); err != nil {
		return err
	}
	applets := append([]string(nil), busyboxApplets...)
	sort.Strings(applets)
	for _, a := range applets {
		if err := w.Symlink("bin/"+a, "busybox"); err != nil {
			return err
		}
	}
	for _, m := range k.BaseModules {
		if err := addModule(w, k, deps, m); err != nil {
			return err
		}
	}
	if err := w.Close(); err != nil {
		return err
	}
	return f.Close()
}

// addModule copies module name into /modules/<name>.ko of the archive.
func addModule(w *cpioWriter, k *kernelCache, deps *moduleDeps, name string) error {
	p, err := k.moduleFile(deps, name)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	return w.File("modules/"+name+".ko", 0o644, data)
}

// checkStatic fails if the ELF file at p has a program interpreter.
func checkStatic(p string) error {
	ef, err := elf.Open(p)
	if err != nil {
		return err
	}
	defer ef.Close()
	for _, prog := range ef.Progs {
		if prog.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked (install busybox-static)", p)
		}
	}
	return nil
}

// lockPath takes an exclusive flock on p, creating it; the returned
// function releases it.
func lockPath(p string) (func(), error) {
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|syscall.O_CLOEXEC, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", p, err)
	}
	return func() { f.Close() }, nil
}

// writeFileAtomic writes data to p through a temporary file and rename.
func writeFileAtomic(p string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(p), "."+filepath.Base(p)+".tmp-")
	if err != nil {
		return err
	}
	_, werr := f.Write(data)
	cerr := f.Close()
	if err := errors.Join(werr, cerr, os.Chmod(f.Name(), perm)); err != nil {
		os.Remove(f.Name())
		return err
	}
	if err := os.Rename(f.Name(), p); err != nil {
		os.Remove(f.Name())
		return err
	}
	return nil
}

// readReady reads dir's ready file, checks its format line and returns the
// lines after it: a cache entry without it is incomplete.
func readReady(dir string) (string, error) {
	ready, err := os.ReadFile(filepath.Join(dir, readyFile))
	if err != nil {
		return "", err
	}
	first, rest, _ := strings.Cut(string(ready), "\n")
	if first != cacheFormat {
		return "", fmt.Errorf("%s: cache format %q, want %q", dir, first, cacheFormat)
	}
	return rest, nil
}
