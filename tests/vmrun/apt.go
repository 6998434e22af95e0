package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
)

// releaseCodename is the Debian release the kernels come from.
const releaseCodename = "bookworm"

// privateApt runs apt-get/apt-cache against a configuration kept entirely
// under dir (sources, lists, package cache, dpkg status), so the machine's
// apt state is neither read for packages nor modified. The archive URIs and
// keyrings are copied from the machine's sources at run time.
type privateApt struct {
	dir     string
	log     io.Writer // verbose output, or io.Discard
	updated bool      // apt-get update ran in this process
}

func (a *privateApt) options() []string {
	return []string{
		"-o", "Dir::Etc::SourceList=" + filepath.Join(a.dir, "sources.list"),
		"-o", "Dir::Etc::SourceParts=" + filepath.Join(a.dir, "sources.list.d"),
		"-o", "Dir::Etc::Preferences=" + filepath.Join(a.dir, "preferences"),
		"-o", "Dir::Etc::PreferencesParts=" + filepath.Join(a.dir, "preferences.d"),
		"-o", "Dir::State=" + filepath.Join(a.dir, "state"),
		"-o", "Dir::State::Lists=" + filepath.Join(a.dir, "lists"),
		"-o", "Dir::State::Status=" + filepath.Join(a.dir, "status"),
		"-o", "Dir::Cache=" + filepath.Join(a.dir, "cache"),
		"-o", "APT::Sandbox::User=root",
		"-o", "Acquire::Languages=none",
		// Only Packages indexes are needed; skip appstream and Contents
		// targets that host apt.conf.d snippets may enable.
		"-o", "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false",
		"-o", "Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false",
		"-o", "Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false",
		"-o", "Acquire::IndexTargets::deb::DEP-11-icons-hidpi::DefaultEnabled=false",
		"-o", "Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled=false",
		"-o", "APT::Get::List-Cleanup=false",
		"-q",
	}
}

// init writes the private configuration: an empty sources.list, the
// generated deb822 sources, an empty dpkg status and the directories apt
// expects.
func (a *privateApt) init() error {
	entries, err := readMachineSources()
	if err != nil {
		return err
	}
	src, err := privateSources(entries, releaseCodename)
	if err != nil {
		return err
	}
	for _, d := range []string{"sources.list.d", "preferences.d", "state", "lists/partial", "cache/archives/partial"} {
		if err := os.MkdirAll(filepath.Join(a.dir, d), 0o755); err != nil {
			return err
		}
	}
	files := map[string]string{
		"sources.list":                 "",
		"preferences":                  "",
		"status":                       "",
		"sources.list.d/vmrun.sources": src,
	}
	for name, content := range files {
		if err := writeFileAtomic(filepath.Join(a.dir, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func (a *privateApt) run(ctx context.Context, dir, tool string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, tool, append(a.options(), args...)...)
	cmd.Dir = dir
	var out, errb bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = io.MultiWriter(&errb, a.log)
	fmt.Fprintf(a.log, "vmrun: %s %s\n", tool, strings.Join(args, " "))
	if err := cmd.Run(); err != nil {
		return out.Bytes(), fmt.Errorf("%s %s: %w: %s", tool, strings.Join(args, " "), err, aptCause(errb.String()))
	}
	return out.Bytes(), nil
}

// update runs apt-get update once per process.
func (a *privateApt) update(ctx context.Context) error {
	if a.updated {
		return nil
	}
	if _, err := a.run(ctx, a.dir, "apt-get", "update"); err != nil {
		return err
	}
	a.updated = true
	return nil
}

// haveLists reports whether the private lists were fetched before.
func (a *privateApt) haveLists() bool {
	m, _ := filepath.Glob(filepath.Join(a.dir, "lists", "*_Packages*"))
	return len(m) > 0
}

var abiDepend = regexp.MustCompile(`\b(linux-image-[0-9][^ ,()]*)\s*\(=\s*([^)\s]+)\)`)

// parseMetaDepends extracts the ABI package and version from the
// Depends field of linux-image-amd64's `apt-cache show` record.
func parseMetaDepends(record string) (pkg, version string, err error) {
	for _, line := range strings.Split(record, "\n") {
		if !strings.HasPrefix(line, "Depends:") {
			continue
		}
		if m := abiDepend.FindStringSubmatch(line); m != nil {
			return m[1], m[2], nil
		}
	}
	return "", "", fmt.Errorf("no linux-image-<abi> (= version) dependency in linux-image-amd64 record")
}

// resolveKernel resolves linux-image-amd64 for kernel to its ABI package
// (e.g. linux-image-6.1.0-56-amd64) and version. With fresh set, or without
// lists, it runs apt-get update first.
func (a *privateApt) resolveKernel(ctx context.Context, kernel string, fresh bool) (pkg, version string, err error) {
	if fresh || !a.haveLists() {
		if err := a.update(ctx); err != nil {
			return "", "", err
		}
	}
	// bookworm: the highest version from bookworm, -updates or -security
	// (backports are NotAutomatic, so they lose). backports: pin the suite.
	args := []string{"show", "--no-all-versions", "linux-image-amd64"}
	if kernel == kernelBackports {
		args = append([]string{"-o", "APT::Default-Release=" + releaseCodename + "-backports"}, args...)
	}
	out, err := a.run(ctx, a.dir, "apt-cache", args...)
	if err != nil {
		return "", "", err
	}
	return parseMetaDepends(string(out))
}

// download fetches pkg=version into dir and returns the .deb path. A
// failure (stale lists) triggers one apt-get update and a retry.
func (a *privateApt) download(ctx context.Context, dir, pkg, version string) (string, error) {
	_, err := a.run(ctx, dir, "apt-get", "download", pkg+"="+version)
	if err != nil && !a.updated {
		if uerr := a.update(ctx); uerr != nil {
			return "", fmt.Errorf("%w; retry: %w", err, uerr)
		}
		_, err = a.run(ctx, dir, "apt-get", "download", pkg+"="+version)
	}
	if err != nil {
		return "", err
	}
	m, _ := filepath.Glob(filepath.Join(dir, pkg+"_*.deb"))
	if len(m) != 1 {
		return "", fmt.Errorf("apt-get download %s: want one .deb in %s, found %d", pkg, dir, len(m))
	}
	return m[0], nil
}

// aptCause reduces apt's stderr to one line: its "E:" lines (the cause:
// an unreachable archive, a package no longer served), else the last line.
func aptCause(stderr string) string {
	var errs []string
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	for _, l := range lines {
		if strings.HasPrefix(l, "E: ") {
			errs = append(errs, strings.TrimPrefix(l, "E: "))
		}
	}
	if len(errs) > 0 {
		return strings.Join(errs, "; ")
	}
	return lines[len(lines)-1]
}
