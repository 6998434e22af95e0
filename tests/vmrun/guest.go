package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Guest protocol markers, written by /init to /dev/kmsg at level 2 so they
// reach the console (ttyS0) synchronously, and parsed from the console log.
const (
	exitMarker = "@@VMRUN_EXIT="
	failMarker = "@@VMRUN_FAIL="
	// startMarker is written just before the program starts: a guest that
	// dies without it never ran the program, so booting again is safe.
	startMarker = "@@VMRUN_START@@"
)

// Mount options of the 9p shares. msize=512000 is the largest the 6.1
// virtio transport accepts.
const (
	ninepOpts     = "trans=virtio,version=9p2000.L,msize=512000"
	hostRootTag   = "hostroot"
	shareTagStart = "share"
)

// share is a host directory exported read-write at the same guest path.
type share struct {
	Tag  string
	Path string
}

// guestSpec is everything /init needs to know about one run.
type guestSpec struct {
	Modules []string // module names under /modules, in insmod order
	Shares  []share
	Cwd     string
	Env     []string // K=V, applied in order (later wins)
	Program string
	Args    []string
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// initScript renders the guest's /init (busybox sh): mount the kernel
// filesystems, insmod the modules, build the root (9p host root, read-only,
// under a tmpfs overlay), mount the read-write shares, then run
// /run/vmrun/run.sh in the chroot with its output on ttyS1, report the exit
// status on /dev/kmsg and power off.
func initScript(s *guestSpec) string {
	var b strings.Builder
	b.WriteString(`#!/bin/sh
export PATH=/bin
fail() {
	echo "<2>` + failMarker + `$*@@" >/dev/kmsg
	poweroff -f
	sleep 60
}
mount -t devtmpfs devtmpfs /dev || fail "mount /dev"
mount -t proc proc /proc || fail "mount /proc"
mount -t sysfs sysfs /sys || fail "mount /sys"
`)
	if len(s.Modules) > 0 {
		fmt.Fprintf(&b, "for m in %s; do\n\tinsmod /modules/$m.ko || fail \"insmod $m\"\ndone\n", strings.Join(s.Modules, " "))
	}
	fmt.Fprintf(&b, `mount -t 9p -o %s,cache=loose,ro %s /lower || fail "mount 9p host root"
mount -t tmpfs -o mode=755 tmpfs /upper || fail "mount tmpfs upper"
mkdir -p /upper/data /upper/work
mount -t overlay -o lowerdir=/lower,upperdir=/upper/data,workdir=/upper/work overlay /newroot || fail "mount overlay root"
mkdir -p /newroot/dev /newroot/proc /newroot/sys /newroot/run /newroot/tmp
mount -t devtmpfs devtmpfs /newroot/dev || fail "mount root /dev"
mkdir -p /newroot/dev/pts /newroot/dev/shm
mount -t devpts devpts /newroot/dev/pts
mount -t tmpfs tmpfs /newroot/dev/shm
mount -t proc proc /newroot/proc || fail "mount root /proc"
mount -t sysfs sysfs /newroot/sys || fail "mount root /sys"
mount -t tmpfs -o mode=755 tmpfs /newroot/run || fail "mount root /run"
`, ninepOpts, hostRootTag)
	for _, sh := range s.Shares {
		p := shellQuote("/newroot" + sh.Path)
		fmt.Fprintf(&b, "mkdir -p %s && mount -t 9p -o %s %s %s || fail %s\n",
			p, ninepOpts, sh.Tag, p, shellQuote("mount share "+sh.Path))
	}
	b.WriteString(`ip link set lo up 2>/dev/null || true
mkdir -p /newroot/run/vmrun && cp /vmrun/run.sh /newroot/run/vmrun/run.sh || fail "copy run.sh"
stty -F /dev/ttyS1 raw -echo || fail "stty ttyS1"
echo "<2>` + startMarker + `" >/dev/kmsg
chroot /newroot /bin/sh /run/vmrun/run.sh </dev/null >/dev/ttyS1 2>&1
rc=$?
sync
echo "<2>` + exitMarker + `$rc@@" >/dev/kmsg
poweroff -f
sleep 60
`)
	return b.String()
}

// runScript renders /run/vmrun/run.sh, run by the host's /bin/sh inside the
// chroot: cd to the caller's directory and exec the program with exactly
// the given environment.
func runScript(s *guestSpec) string {
	var b strings.Builder
	b.WriteString("PATH=/usr/bin:/bin\n")
	fmt.Fprintf(&b, "cd %s || { echo \"vmrun: guest: cannot cd to %s\" >&2; exit 125; }\n",
		shellQuote(s.Cwd), strings.ReplaceAll(s.Cwd, `"`, `\"`))
	b.WriteString("exec /usr/bin/env -i")
	for _, kv := range s.Env {
		b.WriteString(" " + shellQuote(kv))
	}
	b.WriteString(" " + shellQuote(s.Program))
	for _, a := range s.Args {
		b.WriteString(" " + shellQuote(a))
	}
	b.WriteString("\n")
	return b.String()
}

// writeRunCpio writes the per-run archive appended to base.cpio: /init,
// /vmrun/run.sh and extra module files (name -> host path).
func writeRunCpio(path string, s *guestSpec, extra map[string]string) error {
	var buf bytes.Buffer
	w := newCpioWriter(&buf)
	if err := w.File("init", 0o755, []byte(initScript(s))); err != nil {
		return err
	}
	if err := w.File("vmrun/run.sh", 0o644, []byte(runScript(s))); err != nil {
		return err
	}
	names := make([]string, 0, len(extra))
	for n := range extra {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		data, err := os.ReadFile(extra[n])
		if err != nil {
			return err
		}
		if err := w.File("modules/"+n+".ko", 0o644, data); err != nil {
			return err
		}
	}
	if err := w.Close(); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

var (
	exitRe = regexp.MustCompile(regexp.QuoteMeta(exitMarker) + `(\d+)@@`)
	failRe = regexp.MustCompile(regexp.QuoteMeta(failMarker) + `(.*?)@@`)
)

// parseConsole extracts the guest's exit status from the console log. ok
// is false when the guest never reported one (panic, OOM, init failure);
// failure then carries an /init failure message, if any.
func parseConsole(console string) (code int, ok bool, failure string) {
	if m := exitRe.FindAllStringSubmatch(console, -1); m != nil {
		n, err := strconv.Atoi(m[len(m)-1][1])
		if err == nil && n >= 0 && n <= 255 {
			return n, true, ""
		}
	}
	if m := failRe.FindStringSubmatch(console); m != nil {
		return 0, false, m[1]
	}
	return 0, false, ""
}

// tailLines returns the last n lines of s.
func tailLines(s string, n int) string {
	s = strings.TrimRight(s, "\n")
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n") + "\n"
}

// kvmUsable decides --kvm auto: KVM only if /dev/kvm opened (openErr nil)
// and the CPU advertises hardware virtualization (vmx or svm). A KVM
// without them (e.g. a PVM-only host) hangs stock guest kernels.
func kvmUsable(cpuinfo string, openErr error) bool {
	if openErr != nil {
		return false
	}
	for _, line := range strings.Split(cpuinfo, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || strings.TrimSpace(k) != "flags" {
			continue
		}
		for _, f := range strings.Fields(v) {
			if f == "vmx" || f == "svm" {
				return true
			}
		}
	}
	return false
}

// planShares returns the read-write shares for dirs: cleaned absolute
// paths, duplicates and directories nested in another share dropped,
// tagged share0, share1, ...
func planShares(dirs []string) []share {
	var clean []string
	for _, d := range dirs {
		if d == "" {
			continue
		}
		if p, err := filepath.EvalSymlinks(d); err == nil {
			d = p
		}
		if abs, err := filepath.Abs(d); err == nil {
			clean = append(clean, filepath.Clean(abs))
		}
	}
	sort.Slice(clean, func(i, j int) bool { return len(clean[i]) < len(clean[j]) })
	var kept []string
outer:
	for _, d := range clean {
		for _, k := range kept {
			if d == k || k == "/" || strings.HasPrefix(d, k+"/") {
				continue outer
			}
		}
		kept = append(kept, d)
	}
	sort.Strings(kept)
	out := make([]share, len(kept))
	for i, d := range kept {
		out[i] = share{Tag: shareTagStart + strconv.Itoa(i), Path: d}
	}
	return out
}

// qemuEscape escapes a value for a qemu -option list (',' doubles).
func qemuEscape(s string) string { return strings.ReplaceAll(s, ",", ",,") }
