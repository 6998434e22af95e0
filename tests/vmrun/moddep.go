package main

import (
	"bufio"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// errNoModule reports a module that is neither in modules.dep nor built in.
var errNoModule = errors.New("kernel module not found")

// softdepFile holds the resolved "softdep pre:" dependencies, one
// "module: module ..." line each; it sits next to modules.dep.
const softdepFile = "vmrun.softdep"

// moduleName normalizes a module name or file name: base name without
// .ko/.ko.xz/.ko.zst/.ko.gz, with '-' folded to '_' as the kernel does.
func moduleName(s string) string {
	s = path.Base(s)
	for _, ext := range []string{".xz", ".zst", ".gz"} {
		s = strings.TrimSuffix(s, ext)
	}
	s = strings.TrimSuffix(s, ".ko")
	return strings.ReplaceAll(s, "-", "_")
}

// moduleDeps is a module dependency graph: module name -> its file
// (relative to /lib/modules/<release>, or absolute for modules outside the
// kernel package), its hard dependencies as listed by depmod, and its
// "softdep pre:" modules, which must be loaded first too (libcrc32c needs a
// crc32c provider; the guest has no modprobe to fetch it on demand).
type moduleDeps struct {
	file    map[string]string
	deps    map[string][]string
	soft    map[string][]string
	builtin map[string]bool
}

func newModuleDeps() *moduleDeps {
	return &moduleDeps{file: map[string]string{}, deps: map[string][]string{}, soft: map[string][]string{}, builtin: map[string]bool{}}
}

// parseDepLines parses "file: dep dep ..." lines into file and dst.
func parseDepLines(text, what string, file map[string]string, dst map[string][]string) error {
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f, rest, ok := strings.Cut(line, ":")
		if !ok {
			return fmt.Errorf("%s line %d: missing ':'", what, n)
		}
		name := moduleName(f)
		if file != nil {
			file[name] = f
		}
		var ds []string
		for _, d := range strings.Fields(rest) {
			ds = append(ds, moduleName(d))
		}
		dst[name] = ds
	}
	return sc.Err()
}

// parseModulesDep parses modules.dep ("file: dep dep ..."), optionally
// modules.builtin (one file name per line) and the runner's softdep file.
func parseModulesDep(dep, builtin, soft string) (*moduleDeps, error) {
	m := newModuleDeps()
	if err := parseDepLines(dep, "modules.dep", m.file, m.deps); err != nil {
		return nil, err
	}
	if err := parseDepLines(soft, softdepFile, nil, m.soft); err != nil {
		return nil, err
	}
	for _, line := range strings.Split(builtin, "\n") {
		if line = strings.TrimSpace(line); line != "" {
			m.builtin[moduleName(line)] = true
		}
	}
	return m, nil
}

// addFile adds a module file outside the kernel package (e.g. a dkms-built
// zfs.ko), with dependencies from its .modinfo; it replaces a module of the
// same name. Soft dependencies are kept when they name a known module.
func (m *moduleDeps) addFile(p string) (string, error) {
	info, err := readModinfo(p)
	if err != nil {
		return "", err
	}
	m.file[info.name] = p
	m.deps[info.name] = info.depends
	m.soft[info.name] = nil
	for _, s := range info.softPre {
		if _, ok := m.file[moduleName(s)]; ok {
			m.soft[info.name] = append(m.soft[info.name], moduleName(s))
		}
	}
	return info.name, nil
}

// loadOrder returns the modules to insmod, in order, so that each module
// comes after everything it depends on (soft "pre" dependencies first);
// names already in loaded, and built-in modules, are skipped. Dependencies
// of a module are visited from the end of its modules.dep list, the order
// modprobe uses. It returns [errNoModule] for a name that is neither a
// module nor built in; an unknown soft dependency is ignored.
func (m *moduleDeps) loadOrder(names []string, loaded map[string]bool) ([]string, error) {
	var order []string
	seen := map[string]bool{}
	for k, v := range loaded {
		seen[k] = v
	}
	var visit func(name string, stack []string, soft bool) error
	visit = func(name string, stack []string, soft bool) error {
		if seen[name] {
			return nil
		}
		for _, s := range stack {
			if s == name {
				return fmt.Errorf("module dependency cycle: %s", strings.Join(append(stack, name), " -> "))
			}
		}
		if _, ok := m.file[name]; !ok {
			if m.builtin[name] || soft {
				seen[name] = true
				return nil
			}
			return fmt.Errorf("%w: %s", errNoModule, name)
		}
		stack = append(stack, name)
		for _, s := range m.soft[name] {
			if err := visit(s, stack, true); err != nil {
				return err
			}
		}
		ds := m.deps[name]
		for i := len(ds) - 1; i >= 0; i-- {
			if err := visit(ds[i], stack, false); err != nil {
				return err
			}
		}
		seen[name] = true
		order = append(order, name)
		return nil
	}
	for _, n := range names {
		if err := visit(moduleName(n), nil, false); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// modInfo is what the runner reads from a module's .modinfo section.
type modInfo struct {
	name    string
	depends []string // module names
	softPre []string // module names or aliases from "softdep=pre: ..."
	aliases []string
}

// readModinfo reads a module's .modinfo section (NUL-separated key=value
// strings), as modinfo(8) does.
func readModinfo(p string) (*modInfo, error) {
	f, err := elf.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("%s: no .modinfo section", p)
	}
	data, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	info := &modInfo{name: moduleName(p)}
	for _, kv := range bytes.Split(data, []byte{0}) {
		k, v, ok := strings.Cut(string(kv), "=")
		switch {
		case !ok:
		case k == "name":
			info.name = moduleName(v)
		case k == "depends":
			for _, d := range strings.Split(v, ",") {
				if d != "" {
					info.depends = append(info.depends, moduleName(d))
				}
			}
		case k == "alias":
			info.aliases = append(info.aliases, v)
		case k == "softdep":
			// "pre: a b post: c"
			pre := false
			for _, w := range strings.Fields(v) {
				switch w {
				case "pre:":
					pre = true
				case "post:":
					pre = false
				default:
					if pre {
						info.softPre = append(info.softPre, w)
					}
				}
			}
		}
	}
	return info, nil
}

// genModulesDep builds, for the .ko files under dir (a
// /lib/modules/<release> tree), modules.dep in depmod's format (each module
// followed by all the modules it needs, transitively, listed so that loading
// them from last to first works) and the runner's softdep file (each
// module's "softdep pre:" names resolved through module names and aliases;
// among several providers, a *_generic one is preferred). Debian's package
// leaves modules.dep to its postinst (depmod), so the runner makes it from
// the modules' own .modinfo.
func genModulesDep(dir string) (dep, soft string, err error) {
	m := newModuleDeps()
	softRaw := map[string][]string{}
	providers := map[string][]string{}
	err = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".ko") {
			return err
		}
		info, err := readModinfo(p)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		m.file[info.name] = rel
		m.deps[info.name] = info.depends
		if len(info.softPre) > 0 {
			softRaw[info.name] = info.softPre
		}
		for _, a := range info.aliases {
			providers[a] = append(providers[a], info.name)
		}
		return nil
	})
	if err != nil {
		return "", "", err
	}
	names := make([]string, 0, len(m.file))
	for n := range m.file {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return m.file[names[i]] < m.file[names[j]] })
	var b, s strings.Builder
	for _, n := range names {
		order, err := m.loadOrder(m.deps[n], nil)
		if err != nil {
			return "", "", fmt.Errorf("%s: %w", n, err)
		}
		b.WriteString(m.file[n] + ":")
		for i := len(order) - 1; i >= 0; i-- {
			b.WriteString(" " + m.file[order[i]])
		}
		b.WriteString("\n")
		var pre []string
		for _, want := range softRaw[n] {
			if p := resolveProvider(want, m.file, providers); p != "" && p != n {
				pre = append(pre, p)
			}
		}
		if len(pre) > 0 {
			s.WriteString(n + ": " + strings.Join(pre, " ") + "\n")
		}
	}
	return b.String(), s.String(), nil
}

// resolveProvider maps a softdep name to a module: the module of that
// name, else a module with that alias (preferring *_generic, then the
// first by name), else "".
func resolveProvider(want string, files map[string]string, providers map[string][]string) string {
	if _, ok := files[moduleName(want)]; ok {
		return moduleName(want)
	}
	ps := append([]string(nil), providers[want]...)
	if len(ps) == 0 {
		return ""
	}
	sort.Strings(ps)
	for _, p := range ps {
		if strings.HasSuffix(p, "_generic") {
			return p
		}
	}
	return ps[0]
}
