package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// Tools that --tools puts in the guest. Each is a set of Debian packages
// downloaded through the private apt configuration and unpacked under the
// cache; nothing is installed on the host. zfs also brings the OpenZFS
// kernel module, built from zfs-dkms's source against the VM kernel's
// unpacked headers.
const (
	toolZFS  = "zfs"
	toolLVM2 = "lvm2"
)

// toolSpec says where a tool's packages come from and what must work.
type toolSpec struct {
	release string   // APT::Default-Release, or "" for apt's policy (the newest of bookworm, -updates, -security)
	roots   []string // always unpacked, even if the host has them
	bins    []string // must exist under root and find their libraries
}

var toolSpecs = map[string]toolSpec{
	// OpenZFS 2.3 from bookworm-backports: the libraries are pinned to the
	// userland's version by its Depends.
	toolZFS: {
		release: releaseCodename + "-backports",
		roots:   []string{"zfsutils-linux", "libzfs6linux", "libzpool6linux", "libnvpair3linux", "libuutil3linux"},
		bins:    []string{"sbin/zfs", "sbin/zpool", "sbin/zstream", "lib/udev/zvol_id"},
	},
	toolLVM2: {
		roots: []string{"lvm2", "dmsetup", "libdevmapper1.02.1"},
		bins:  []string{"sbin/lvm", "sbin/dmsetup"},
	},
}

// skipDeps are dependencies of the tools' packages that nothing the guest
// runs needs: maintainer-script helpers, python for arc_summary, the dkms
// framework (the module is built directly), and the compiler package of
// linux-headers (the host's gcc-12 is a base package).
var skipDeps = map[string]bool{
	"python3": true, "libpython3-stdlib": true, "init-system-helpers": true,
	"lsb-base": true, "sysvinit-utils": true, "debconf": true, "debconf-2.0": true,
	"dkms": true, "file": true, "lsb-release": true, "libc6-dev": true,
	"libc-dev": true, "linux-compiler-gcc-12-x86": true, "perl": true,
}

// tool is a prepared tool under <cache>/tools/<name>-<version>.
type tool struct {
	Name    string
	Version string
	Dir     string
}

func (t *tool) root() string { return filepath.Join(t.Dir, rootDir) }

// binDirs are the directories of the tool's root that go first in the
// guest's PATH (udev helpers such as zvol_id included).
func (t *tool) binDirs() []string {
	return existingDirs(t.root(), "usr/sbin", "usr/bin", "sbin", "bin", "usr/lib/udev", "lib/udev")
}

// libDirs go into LD_LIBRARY_PATH.
func (t *tool) libDirs() []string {
	return existingDirs(t.root(), "usr/lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu", "usr/lib", "lib")
}

func existingDirs(root string, rel ...string) []string {
	var out []string
	for _, r := range rel {
		p := filepath.Join(root, r)
		if st, err := os.Lstat(p); err == nil && st.IsDir() {
			out = append(out, p)
		}
	}
	return out
}

// toolPointer names the file holding the directory last prepared for name.
func toolPointer(cache, name string) string { return filepath.Join(cache, "tool-"+name) }

// cachedTool follows the pointer file of name.
func cachedTool(cache, name string) (*tool, error) {
	b, err := os.ReadFile(toolPointer(cache, name))
	if err != nil {
		return nil, err
	}
	return loadTool(cache, name, strings.TrimSpace(string(b)))
}

// loadTool opens <cache>/tools/<dir> if its ready file is there.
func loadTool(cache, name, dir string) (*tool, error) {
	d := filepath.Join(cache, "tools", dir)
	rest, err := readReady(d)
	if err != nil {
		return nil, err
	}
	version, _, _ := strings.Cut(rest, "\n")
	return &tool{Name: name, Version: strings.TrimSpace(version), Dir: d}, nil
}

// prepareTool resolves name's packages through apt, and downloads and
// unpacks them unless that version is cached. The caller holds the lock.
func prepareTool(ctx context.Context, cache string, apt *privateApt, name string, log io.Writer) (*tool, error) {
	spec := toolSpecs[name]
	host, err := hostInstalled("/var/lib/dpkg/status")
	if err != nil {
		return nil, fmt.Errorf("read the host's dpkg status: %w", err)
	}
	r := &resolver{apt: apt, release: spec.release, host: host, skip: skipDeps}
	if !apt.haveLists() {
		if err := apt.update(ctx); err != nil {
			return nil, err
		}
	}
	head, err := r.show(ctx, spec.roots[0], "")
	if err != nil {
		return nil, fmt.Errorf("resolve %s from %s: %w", spec.roots[0], spec.release, err)
	}
	dir := name + "-" + head.Version
	if t, err := loadTool(cache, name, dir); err == nil {
		return t, writeFileAtomic(toolPointer(cache, name), []byte(dir+"\n"), 0o644)
	}
	roots := make([]depAlt, len(spec.roots))
	for i, n := range spec.roots {
		roots[i] = depAlt{Name: n}
	}
	roots[0].Pin = head.Version
	pkgs, err := r.closure(ctx, roots)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	fmt.Fprintf(log, "vmrun: %s %s: unpacking %v\n", name, head.Version, pkgs)
	tmp, err := os.MkdirTemp(cache, ".build-"+dir+"-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	t := &tool{Name: name, Version: head.Version, Dir: tmp}
	if err := apt.downloadAll(ctx, tmp, t.root(), pkgs); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if err := checkBins(ctx, t, spec.bins); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	var list strings.Builder
	fmt.Fprintf(&list, "%s\n%s\n", cacheFormat, head.Version)
	for _, p := range pkgs {
		fmt.Fprintf(&list, "%s\n", p)
	}
	if err := os.WriteFile(filepath.Join(tmp, readyFile), []byte(list.String()), 0o644); err != nil {
		return nil, err
	}
	final := filepath.Join(cache, "tools", dir)
	if err := installDir(tmp, final); err != nil {
		return nil, err
	}
	t.Dir = final
	return t, writeFileAtomic(toolPointer(cache, name), []byte(dir+"\n"), 0o644)
}

// checkBins fails unless each binary exists under the tool's root and the
// dynamic loader finds every library it needs from the host plus the
// tool's own library directories (LD_TRACE_LOADED_OBJECTS: nothing runs).
func checkBins(ctx context.Context, t *tool, bins []string) error {
	for _, b := range bins {
		p := filepath.Join(t.root(), b)
		if _, err := os.Stat(p); err != nil {
			// usrmerge: Debian may ship it under usr/.
			alt := filepath.Join(t.root(), "usr", b)
			if _, err2 := os.Stat(alt); err2 != nil {
				return fmt.Errorf("%s is not in the unpacked packages", b)
			}
			p = alt
		}
		cmd := exec.CommandContext(ctx, p)
		cmd.Env = []string{"LD_TRACE_LOADED_OBJECTS=1", "LD_LIBRARY_PATH=" + strings.Join(t.libDirs(), ":")}
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s: loader check: %w: %s", b, err, strings.TrimSpace(string(out)))
		}
		for _, line := range strings.Split(string(out), "\n") {
			if strings.Contains(line, "not found") {
				return fmt.Errorf("%s needs a library neither the host nor the unpacked packages have: %s", b, strings.TrimSpace(line))
			}
		}
	}
	return nil
}

// installDir renames a finished build directory into place.
func installDir(tmp, final string) error {
	if err := os.MkdirAll(filepath.Dir(final), 0o755); err != nil {
		return err
	}
	if err := os.RemoveAll(final); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o755); err != nil { // MkdirTemp made it 0700
		return err
	}
	return os.Rename(tmp, final)
}

// zfsModules is a built OpenZFS module pair for one kernel and version.
type zfsModules struct {
	Dir string // <cache>/zfs/<release>-<version>
}

func (z *zfsModules) files() []string {
	return []string{filepath.Join(z.Dir, "spl.ko"), filepath.Join(z.Dir, "zfs.ko")}
}

func zfsModulesDir(cache, release, version string) string {
	return filepath.Join(cache, "zfs", release+"-"+version)
}

func loadZFSModules(dir string) (*zfsModules, error) {
	if _, err := os.Stat(filepath.Join(dir, readyFile)); err != nil {
		return nil, err
	}
	return &zfsModules{Dir: dir}, nil
}

// buildZFSModules builds spl.ko and zfs.ko from zfs-dkms at the userland's
// version against the unpacked linux-headers of k, as dkms would but with
// every file under the cache: configure + make in a copy of the source,
// then strip --strip-debug (as dkms does). The caller holds the lock.
func buildZFSModules(ctx context.Context, cache string, apt *privateApt, k *kernelCache, zfs *tool, log, progress io.Writer) (*zfsModules, error) {
	final := zfsModulesDir(cache, k.Release, zfs.Version)
	if z, err := loadZFSModules(final); err == nil {
		return z, nil
	}
	if k.Version == "" {
		return nil, fmt.Errorf("kernel cache %s records no package version; rebuild it with DMSNAP_VM_REFRESH=1", k.Dir)
	}
	for _, bin := range []string{"gcc-12", "make", "strip"} {
		if _, err := exec.LookPath(bin); err != nil {
			return nil, fmt.Errorf("building the OpenZFS module needs %s (base packages: run scripts/deps.sh as root)", bin)
		}
	}
	fmt.Fprintf(progress, "vmrun: building OpenZFS %s for %s (downloads the kernel headers and zfs-dkms source, ~15 MB; about 7 min on 2 cores, once per kernel)\n", zfs.Version, k.Release)
	start := time.Now()
	host, err := hostInstalled("/var/lib/dpkg/status")
	if err != nil {
		return nil, fmt.Errorf("read the host's dpkg status: %w", err)
	}
	// The headers' dependencies (linux-kbuild) are resolved by apt's own
	// policy, like the kernel (bookworm-security's, not the release's
	// original); zfs-dkms is pinned to the userland's version so module
	// and tools always match.
	r := &resolver{apt: apt, host: host, skip: skipDeps}
	pkgs, err := r.closure(ctx, []depAlt{
		{Name: "linux-headers-" + k.Release, Pin: k.Version},
		{Name: "zfs-dkms", Pin: zfs.Version},
	})
	if err != nil {
		return nil, fmt.Errorf("zfs module sources: %w", err)
	}
	tmp, err := os.MkdirTemp(cache, ".build-zfs-"+k.Release+"-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	root := filepath.Join(tmp, rootDir)
	if err := apt.downloadAll(ctx, tmp, root, pkgs); err != nil {
		return nil, fmt.Errorf("zfs module sources for %s: %w; if Debian replaced that kernel ABI, DMSNAP_VM_REFRESH=1 moves the cache to the current one", k.Release, err)
	}
	obj := filepath.Join(root, "usr", "src", "linux-headers-"+k.Release)
	src, err := headersSource(obj, root)
	if err != nil {
		return nil, err
	}
	zver, _, _ := strings.Cut(zfs.Version, "-") // 2.3.2-2~bpo12+2 -> 2.3.2
	build := filepath.Join(tmp, "build")
	if out, err := exec.CommandContext(ctx, "cp", "-a", filepath.Join(root, "usr", "src", "zfs-"+zver), build).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("copy the zfs-dkms source: %w: %s", err, strings.TrimSpace(string(out)))
	}
	logPath := filepath.Join(cache, "zfs", "build-"+k.Release+"-"+zfs.Version+".log")
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return nil, err
	}
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	env := append(os.Environ(), "LD_LIBRARY_PATH="+strings.Join(existingDirs(root, "usr/lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu"), ":"))
	steps := [][]string{
		{"./configure", "--disable-dependency-tracking", "--prefix=/usr", "--with-config=kernel",
			"--with-linux=" + src, "--with-linux-obj=" + obj},
		{"make", fmt.Sprintf("-j%d", runtime.NumCPU())},
	}
	for _, s := range steps {
		t := time.Now()
		fmt.Fprintf(logf, "+ %s\n", strings.Join(s, " "))
		cmd := exec.CommandContext(ctx, s[0], s[1:]...)
		cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = build, env, logf, logf
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("zfs module build: %s failed: %w; the log is %s (retry: .cache/bin/vmrun --kernel K --tools zfs --setup)", s[0], err, logPath)
		}
		fmt.Fprintf(log, "vmrun: zfs build: %s took %v\n", s[0], time.Since(t).Round(time.Second))
	}
	out := filepath.Join(tmp, "modules")
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, err
	}
	for _, m := range []string{"spl", "zfs"} {
		ko := filepath.Join(build, "module", m+".ko")
		if o, err := exec.CommandContext(ctx, "strip", "--strip-debug", "-o", filepath.Join(out, m+".ko"), ko).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("zfs module build: strip %s: %w: %s (log %s)", ko, err, strings.TrimSpace(string(o)), logPath)
		}
	}
	ready := fmt.Sprintf("%s\nzfs %s for %s %s\n", cacheFormat, zfs.Version, k.Release, k.Version)
	if err := os.WriteFile(filepath.Join(out, readyFile), []byte(ready), 0o644); err != nil {
		return nil, err
	}
	if err := installDir(out, final); err != nil {
		return nil, err
	}
	fmt.Fprintf(progress, "vmrun: built OpenZFS %s for %s in %v\n", zfs.Version, k.Release, time.Since(start).Round(time.Second))
	return &zfsModules{Dir: final}, nil
}

// headersSource finds the common headers tree that the arch-specific
// linux-headers Makefile includes by absolute path (/usr/src/...), and
// points that include at the unpacked copy.
func headersSource(obj, root string) (string, error) {
	mk := filepath.Join(obj, "Makefile")
	data, err := os.ReadFile(mk)
	if err != nil {
		return "", fmt.Errorf("kernel headers: %w", err)
	}
	var src string
	var lines []string
	for _, line := range strings.Split(string(data), "\n") {
		if p, ok := strings.CutPrefix(line, "include /usr/src/"); ok {
			src = filepath.Join(root, "usr", "src", filepath.Dir(p))
			line = "include " + filepath.Join(root, "usr", "src", p)
		}
		lines = append(lines, line)
	}
	if src == "" {
		return "", fmt.Errorf("kernel headers: %s includes no /usr/src/ Makefile (the linux-headers layout changed)", mk)
	}
	if err := os.WriteFile(mk, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
		return "", err
	}
	return src, nil
}

// guestTools is what --tools adds to a run.
type guestTools struct {
	binDirs, libDirs []string
	modules          []string // .ko paths, loaded after the base modules
}

// prepareTools returns the tools named in names, preparing what is
// missing. Without refresh, cached tools are used without apt. The caller
// holds the cache lock when anything must be prepared.
func prepareTools(ctx context.Context, cache string, k *kernelCache, names []string, refresh bool, log, progress io.Writer) (*guestTools, error) {
	g := &guestTools{}
	var apt *privateApt
	for _, name := range names {
		t, err := cachedTool(cache, name)
		if refresh || err != nil {
			if apt == nil {
				apt = &privateApt{dir: filepath.Join(cache, aptDir), log: log}
				if err := apt.init(); err != nil {
					return nil, fmt.Errorf("private apt: %w", err)
				}
			}
			if t, err = prepareTool(ctx, cache, apt, name, log); err != nil {
				return nil, err
			}
		}
		g.binDirs = append(g.binDirs, t.binDirs()...)
		g.libDirs = append(g.libDirs, t.libDirs()...)
		if name != toolZFS {
			continue
		}
		z, err := loadZFSModules(zfsModulesDir(cache, k.Release, t.Version))
		if err != nil {
			if apt == nil {
				apt = &privateApt{dir: filepath.Join(cache, aptDir), log: log}
				if err := apt.init(); err != nil {
					return nil, fmt.Errorf("private apt: %w", err)
				}
			}
			if z, err = buildZFSModules(ctx, cache, apt, k, t, log, progress); err != nil {
				return nil, err
			}
		}
		g.modules = append(g.modules, z.files()...)
	}
	return g, nil
}

// toolsCached reports whether names are ready for k without any apt work.
func toolsCached(cache string, k *kernelCache, names []string) bool {
	for _, name := range names {
		t, err := cachedTool(cache, name)
		if err != nil {
			return false
		}
		if name == toolZFS {
			if _, err := loadZFSModules(zfsModulesDir(cache, k.Release, t.Version)); err != nil {
				return false
			}
		}
	}
	return true
}

// pruneCache removes kernels, tools and zfs modules that no pointer file
// names any more (an ABI or package version that moved on). Only the lock
// holder prunes.
func pruneCache(cache string, log io.Writer) error {
	keepKernels := map[string]bool{}
	for _, kernel := range []string{kernelBookworm, kernelBackports} {
		if b, err := os.ReadFile(pointerFile(cache, kernel)); err == nil {
			keepKernels[strings.TrimSpace(string(b))] = true
		}
	}
	keepTools := map[string]bool{}
	for name := range toolSpecs {
		if b, err := os.ReadFile(toolPointer(cache, name)); err == nil {
			keepTools[strings.TrimSpace(string(b))] = true
		}
	}
	var errs []error
	remove := func(p string) {
		fmt.Fprintf(log, "vmrun: pruning %s\n", p)
		if err := os.RemoveAll(p); err != nil {
			errs = append(errs, err)
		}
	}
	entries, _ := os.ReadDir(cache)
	for _, e := range entries {
		// Kernel directories are named by release and hold a ready file.
		if e.IsDir() && !keepKernels[e.Name()] {
			if _, err := os.Stat(filepath.Join(cache, e.Name(), vmlinuxFile)); err == nil {
				remove(filepath.Join(cache, e.Name()))
			}
		}
	}
	tools, _ := os.ReadDir(filepath.Join(cache, "tools"))
	for _, e := range tools {
		if !keepTools[e.Name()] {
			remove(filepath.Join(cache, "tools", e.Name()))
		}
	}
	mods, _ := os.ReadDir(filepath.Join(cache, "zfs"))
	for _, e := range mods {
		if !e.IsDir() {
			continue
		}
		keep := false
		for rel := range keepKernels {
			for dir := range keepTools {
				if v, ok := strings.CutPrefix(dir, toolZFS+"-"); ok && e.Name() == rel+"-"+v {
					keep = true
				}
			}
		}
		if !keep {
			remove(filepath.Join(cache, "zfs", e.Name()))
		}
	}
	return errors.Join(errs...)
}

// prepare returns the kernel and tools of o, preparing what the cache
// lacks. As root, preparation runs in a sandboxed child (sandbox.go) and
// this process then loads what the child made; the child, or a runner
// without root, prepares in-process under the cache lock and prunes what
// no pointer names any more.
func prepare(ctx context.Context, cache string, o *options, refresh bool, log, progress io.Writer) (*kernelCache, *guestTools, error) {
	if !refresh {
		if k, err := cachedKernel(cache, o.kernel); err == nil && toolsCached(cache, k, o.tools) {
			g, err := prepareTools(ctx, cache, k, o.tools, false, log, progress)
			return k, g, err
		}
	}
	if os.Getenv(sandboxEnv) != "1" && os.Geteuid() == 0 {
		exe, err := os.Executable()
		if err != nil {
			return nil, nil, err
		}
		args := []string{"--setup", "--kernel", o.kernel}
		if len(o.tools) > 0 {
			args = append(args, "--tools", strings.Join(o.tools, ","))
		}
		if o.verbose {
			args = append(args, "-v")
		}
		cmd := sandboxed(exec.CommandContext(ctx, exe, args...))
		cmd.Stdout, cmd.Stderr = io.Discard, progress
		fmt.Fprintf(log, "vmrun: preparing in a sandbox (%s read-only): vmrun %s\n", strings.Join(protectedDirs, " "), strings.Join(args, " "))
		if err := cmd.Run(); err != nil {
			return nil, nil, fmt.Errorf("preparing the cache failed (the reason is above): vmrun %s: %w", strings.Join(args, " "), err)
		}
		k, err := cachedKernel(cache, o.kernel)
		if err != nil {
			return nil, nil, fmt.Errorf("after preparation: %w", err)
		}
		g, err := prepareTools(ctx, cache, k, o.tools, false, log, progress)
		return k, g, err
	}
	k, err := prepareKernel(ctx, cache, o.kernel, refresh, log)
	if err != nil {
		return nil, nil, err
	}
	unlock, err := lockPath(filepath.Join(cache, lockFile))
	if err != nil {
		return nil, nil, err
	}
	defer unlock()
	g, err := prepareTools(ctx, cache, k, o.tools, refresh, log, progress)
	if err != nil {
		return nil, nil, err
	}
	if err := pruneCache(cache, log); err != nil {
		fmt.Fprintf(progress, "vmrun: pruning the cache: %v\n", err)
	}
	return k, g, nil
}
