package zfs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

//go:generate go run golang.org/x/tools/cmd/stringer@v0.52.0 -type Compat -linecomment -output compat_string.go

// Version is one OpenZFS version as `zfs version` prints it:
// "zfs-2.3.2-2~bpo12+2" (userland) or "zfs-kmod-2.3.2-2~bpo12+2" (kernel
// module). Release is what follows the numeric version ("2~bpo12+2"),
// possibly empty; Raw is the whole printed token.
type Version struct {
	Major, Minor, Patch int
	Release             string
	Raw                 string
}

// String returns "2.3.2" or "2.3.2-2~bpo12+2".
func (v Version) String() string {
	s := fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch)
	if v.Release != "" {
		s += "-" + v.Release
	}
	return s
}

// Is reports whether v is exactly major.minor.patch (any release).
func (v Version) Is(major, minor, patch int) bool {
	return v.Major == major && v.Minor == minor && v.Patch == patch
}

// Versions is the pair `zfs version` reports.
type Versions struct {
	Userland Version
	Kernel   Version
}

// versionRE matches ZFS_META_ALIAS, "zfs-<Version>-<Release>"
// (config/zfs-meta.m4), and the kernel line "zfs-kmod-<contents of
// /sys/module/zfs/version>" (lib/libzfs/libzfs_util.c zfs_version_print),
// from OpenZFS 2.3.2 source; the Debian form "zfs-2.3.2-2~bpo12+2", text
// and -j, verified in the VM tier (zfs 2.3.2, kernel 6.1).
var versionRE = regexp.MustCompile(`^zfs-(kmod-)?(0|[1-9][0-9]{0,3})\.(0|[1-9][0-9]{0,3})\.(0|[1-9][0-9]{0,3})(?:-([0-9A-Za-z][0-9A-Za-z._~+:-]*))?$`)

func parseVersionToken(tok string, kmod bool) (Version, error) {
	m := versionRE.FindStringSubmatch(tok)
	if m == nil || (m[1] != "") != kmod {
		return Version{}, fmt.Errorf("%q: %w", tok, ErrVersion)
	}
	var v Version
	v.Major, _ = strconv.Atoi(m[2])
	v.Minor, _ = strconv.Atoi(m[3])
	v.Patch, _ = strconv.Atoi(m[4])
	v.Release = m[5]
	v.Raw = tok
	return v, nil
}

// ParseVersion parses the standard output of `zfs version -j` (OpenZFS
// 2.3+: {"output_version":{...},"zfs_version":{"userland":"zfs-…",
// "kernel":"zfs-kmod-…"}}, cmd/zfs/zfs_main.c zfs_do_version) or of the
// two-line `zfs version` / `zfs -V` text. A userland line without a kernel
// line (what `zfs -V` prints when the module is not loaded) yields
// [ErrNoModule]; anything else unrecognisable yields [ErrVersion] quoting
// what was printed.
func ParseVersion(out []byte) (Versions, error) {
	trimmed := bytes.TrimSpace(out)
	if len(trimmed) > 0 && trimmed[0] == '{' {
		return parseVersionJSON(trimmed)
	}
	lines := strings.Split(string(trimmed), "\n")
	for i := range lines {
		lines[i] = strings.TrimSpace(lines[i])
	}
	var vs Versions
	var err error
	switch {
	case len(trimmed) == 0:
		return Versions{}, fmt.Errorf("zfs version printed nothing: %w", ErrVersion)
	case len(lines) > 2:
		return Versions{}, fmt.Errorf("zfs version printed %q: want 2 lines: %w", trimmed, ErrVersion)
	}
	if vs.Userland, err = parseVersionToken(lines[0], false); err != nil {
		return Versions{}, fmt.Errorf("zfs version userland line: %w", err)
	}
	if len(lines) == 1 {
		return Versions{}, fmt.Errorf("zfs version printed userland %s but no zfs-kmod line: %w", vs.Userland.Raw, ErrNoModule)
	}
	if vs.Kernel, err = parseVersionToken(lines[1], true); err != nil {
		return Versions{}, fmt.Errorf("zfs version kernel line: %w", err)
	}
	return vs, nil
}

func parseVersionJSON(b []byte) (Versions, error) {
	type pair struct {
		Userland *string `json:"userland"`
		Kernel   *string `json:"kernel"`
	}
	var doc struct {
		pair
		ZFSVersion *pair `json:"zfs_version"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return Versions{}, fmt.Errorf("zfs version -j printed %q: %v: %w", b, err, ErrVersion)
	}
	p := doc.pair
	if doc.ZFSVersion != nil {
		p = *doc.ZFSVersion
	}
	if p.Userland == nil {
		return Versions{}, fmt.Errorf("zfs version -j printed %q: no userland: %w", b, ErrVersion)
	}
	var vs Versions
	var err error
	if vs.Userland, err = parseVersionToken(*p.Userland, false); err != nil {
		return Versions{}, fmt.Errorf("zfs version -j userland: %w", err)
	}
	if p.Kernel == nil || *p.Kernel == "" {
		return Versions{}, fmt.Errorf("zfs version -j printed userland %s but no kernel: %w", vs.Userland.Raw, ErrNoModule)
	}
	if vs.Kernel, err = parseVersionToken(*p.Kernel, true); err != nil {
		return Versions{}, fmt.Errorf("zfs version -j kernel: %w", err)
	}
	return vs, nil
}

// Compat is the verdict of [CheckVersions].
type Compat uint8

// Verdicts.
const (
	// CompatOK: userland and kernel module are the same version.
	CompatOK Compat = iota + 1 // ok
	// CompatMismatch: the versions differ but no known breakage applies;
	// warn and proceed.
	CompatMismatch // mismatch
	// CompatKnownBad: a pair with a known breakage; see [Guard].
	CompatKnownBad // known-bad
)

// Guard is what dmsnap may do with a given userland/kernel pair.
type Guard struct {
	Versions
	Compat Compat
	// SendIncrementalPackage is false when `zfs send -I` must not be
	// used; replication then sends a chain of `-i` streams.
	SendIncrementalPackage bool
	// Warning is a one-line explanation for any verdict other than
	// CompatOK; empty otherwise.
	Warning string
}

// knownBad lists userland/kernel pairs with a known breakage.
var knownBad = []struct {
	user, kmod [3]int
	noSendI    bool
	why        string
}{
	// OpenZFS 2.3.1 changed the send ioctl ABI by accident and 2.3.2
	// reverted it: 2.3.2 userland on a 2.3.1 module fails `send -I`,
	// while `send -i` works (seed: "OpenZFS 2.3.1/2.3.2 incremental send
	// compatibility"). Pure 2.3.1 and pure 2.3.2 are fine.
	{[3]int{2, 3, 2}, [3]int{2, 3, 1}, true, "zfs send -I fails with userland 2.3.2 on kernel module 2.3.1; using a chain of -i sends"},
}

// CheckVersions applies the version decision table:
//
//	userland == kernel (version and release)  → CompatOK, -I allowed
//	known-bad pair (userland 2.3.2, kmod 2.3.1) → CompatKnownBad, no -I
//	any other difference                      → CompatMismatch (warn), -I allowed
//
// Unparsable output and a missing module are errors of [ParseVersion],
// before this table applies.
func CheckVersions(vs Versions) Guard {
	g := Guard{Versions: vs, Compat: CompatOK, SendIncrementalPackage: true}
	u, k := vs.Userland, vs.Kernel
	for _, b := range knownBad {
		if u.Is(b.user[0], b.user[1], b.user[2]) && k.Is(b.kmod[0], b.kmod[1], b.kmod[2]) {
			g.Compat = CompatKnownBad
			g.SendIncrementalPackage = !b.noSendI
			g.Warning = fmt.Sprintf("zfs userland %s with kernel module %s: %s", u, k, b.why)
			return g
		}
	}
	if u.String() != k.String() {
		g.Compat = CompatMismatch
		g.Warning = fmt.Sprintf("zfs userland %s differs from kernel module %s; upgrade them together", u, k)
	}
	return g
}

// Version runs `zfs version -j`, falling back to the text form on
// userlands older than 2.3 that reject -j, and parses it. Errors:
// [ErrZFSNotInstalled], [ErrNoModule] (say which), [ErrVersion].
func (r *Runner) Version(ctx context.Context) (Versions, error) {
	out, err := r.output(ctx, "", "version", "-j")
	if err != nil {
		if errors.Is(err, ErrZFSNotInstalled) || errors.Is(err, ErrNoModule) || ctx.Err() != nil {
			return Versions{}, err
		}
		out, err = r.output(ctx, "", "version")
		if err != nil {
			return Versions{}, err
		}
	}
	return ParseVersion(out)
}
