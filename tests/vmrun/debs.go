package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// debPkg is one binary package at one version.
type debPkg struct {
	Name    string
	Version string
}

func (p debPkg) String() string { return p.Name + "=" + p.Version }

// debRecord is the part of an apt-cache show record the resolver reads.
type debRecord struct {
	Package, Version string
	Depends          [][]depAlt // groups of alternatives, Depends then Pre-Depends
}

// depAlt is one alternative of a dependency; Pin is set for "(= V)",
// Min for "(>= V)".
type depAlt struct {
	Name string
	Pin  string
	Min  string
}

// parseRecord parses the first record of apt-cache show output.
func parseRecord(text string) (debRecord, error) {
	var r debRecord
	for _, line := range strings.Split(text, "\n") {
		if line == "" && r.Package != "" {
			break
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok || strings.HasPrefix(line, " ") {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "Package":
			r.Package = v
		case "Version":
			r.Version = v
		case "Depends", "Pre-Depends":
			r.Depends = append(r.Depends, parseDepends(v)...)
		}
	}
	if r.Package == "" || r.Version == "" {
		return r, fmt.Errorf("no Package/Version in apt-cache record")
	}
	return r, nil
}

// parseDepends parses a Depends field: "a (>= 1), b | c:any, d (= 2)".
func parseDepends(v string) [][]depAlt {
	var out [][]depAlt
	for _, group := range strings.Split(v, ",") {
		var alts []depAlt
		for _, alt := range strings.Split(group, "|") {
			alt = strings.TrimSpace(alt)
			if alt == "" {
				continue
			}
			name, rest, _ := strings.Cut(alt, " ")
			name, _, _ = strings.Cut(name, ":") // :any, :amd64
			a := depAlt{Name: name}
			switch rest = strings.TrimSpace(rest); {
			case strings.HasPrefix(rest, "(="):
				a.Pin = strings.TrimSpace(strings.Trim(strings.TrimPrefix(rest, "(="), " )"))
			case strings.HasPrefix(rest, "(>="):
				a.Min = strings.TrimSpace(strings.Trim(strings.TrimPrefix(rest, "(>="), " )"))
			}
			alts = append(alts, a)
		}
		if len(alts) > 0 {
			out = append(out, alts)
		}
	}
	return out
}

// hostInstalled returns the packages dpkg lists as installed on the host,
// read from its status file (never written).
func hostInstalled(statusFile string) (map[string]bool, error) {
	f, err := os.Open(statusFile)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]bool{}
	var name string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "Package: "):
			name = strings.TrimSpace(strings.TrimPrefix(line, "Package: "))
		case strings.HasPrefix(line, "Status: ") && strings.HasSuffix(line, " installed"):
			out[name] = true
		}
	}
	return out, sc.Err()
}

// resolver computes the packages to unpack for a tool: the roots, and the
// dependency closure that the host does not already have installed.
type resolver struct {
	apt     *privateApt
	release string          // APT::Default-Release for unpinned names; "" for apt's own policy
	host    map[string]bool // installed on the host
	skip    map[string]bool // never needed by what the guest runs
}

// show returns the record of name at pin (or the candidate).
func (r *resolver) show(ctx context.Context, name, pin string) (debRecord, error) {
	arg := name
	if pin != "" {
		arg += "=" + pin
	}
	var args []string
	if r.release != "" {
		args = append(args, "-o", "APT::Default-Release="+r.release)
	}
	out, err := r.apt.run(ctx, r.apt.dir, "apt-cache", append(args, "show", "--no-all-versions", arg)...)
	if err != nil {
		return debRecord{}, err
	}
	return parseRecord(string(out))
}

// closure resolves roots (always included, even when the host has them)
// and their dependencies not installed on the host. A group whose
// alternatives are all unknown to apt (a virtual package) is an error
// naming it unless listed in skip.
func (r *resolver) closure(ctx context.Context, roots []depAlt) ([]debPkg, error) {
	seen := map[string]debPkg{}
	queue := append([]depAlt(nil), roots...)
	isRoot := map[string]bool{}
	for _, a := range roots {
		isRoot[a.Name] = true
	}
	for len(queue) > 0 {
		a := queue[0]
		queue = queue[1:]
		if _, ok := seen[a.Name]; ok {
			continue
		}
		rec, err := r.show(ctx, a.Name, a.Pin)
		if err != nil {
			return nil, fmt.Errorf("package %s: %w", a, err)
		}
		if a.Min != "" && exec.CommandContext(ctx, "dpkg", "--compare-versions", rec.Version, "ge", a.Min).Run() != nil {
			return nil, fmt.Errorf("package %s: apt's candidate is %s, older than the %s required", a.Name, rec.Version, a.Min)
		}
		seen[a.Name] = debPkg{rec.Package, rec.Version}
	groups:
		for _, g := range rec.Depends {
			for _, alt := range g {
				if r.skip[alt.Name] || r.host[alt.Name] && !isRoot[alt.Name] {
					continue groups
				}
				if _, ok := seen[alt.Name]; ok {
					continue groups
				}
			}
			// The first alternative apt knows.
			var lastErr error
			for _, alt := range g {
				if _, err := r.show(ctx, alt.Name, alt.Pin); err != nil {
					lastErr = err
					continue
				}
				queue = append(queue, alt)
				continue groups
			}
			return nil, fmt.Errorf("%s depends on %s, which apt cannot resolve: %w", rec.Package, altNames(g), lastErr)
		}
	}
	out := make([]debPkg, 0, len(seen))
	for _, p := range seen {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (a depAlt) String() string {
	if a.Pin != "" {
		return a.Name + "=" + a.Pin
	}
	return a.Name
}

func altNames(g []depAlt) string {
	s := make([]string, len(g))
	for i, a := range g {
		s[i] = a.Name
	}
	return strings.Join(s, " | ")
}

// downloadAll fetches pkgs into dir with one apt-get download (after one
// apt-get update on failure, for stale lists) and unpacks each into root
// with dpkg-deb -x. The .debs are removed afterwards.
func (a *privateApt) downloadAll(ctx context.Context, dir, root string, pkgs []debPkg) error {
	args := []string{"download"}
	for _, p := range pkgs {
		args = append(args, p.String())
	}
	_, err := a.run(ctx, dir, "apt-get", args...)
	if err != nil && !a.updated {
		if uerr := a.update(ctx); uerr != nil {
			return fmt.Errorf("%w; apt-get update: %w", err, uerr)
		}
		_, err = a.run(ctx, dir, "apt-get", args...)
	}
	if err != nil {
		return fmt.Errorf("%w (a package no longer served? DMSNAP_VM_REFRESH=1 re-resolves)", err)
	}
	for _, p := range pkgs {
		m, _ := filepath.Glob(filepath.Join(dir, p.Name+"_*.deb"))
		if len(m) != 1 {
			return fmt.Errorf("apt-get download %s: want one .deb in %s, found %d", p, dir, len(m))
		}
		if out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", m[0], root).CombinedOutput(); err != nil {
			return fmt.Errorf("dpkg-deb -x %s: %w: %s", filepath.Base(m[0]), err, bytes.TrimSpace(out))
		}
		if err := os.Remove(m[0]); err != nil {
			return err
		}
	}
	return nil
}
