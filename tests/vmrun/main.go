package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Exit statuses of the runner itself; otherwise it exits with the
// program's status.
const (
	exitUsage       = 2
	exitTimeout     = 124
	exitFailure     = 125
	exitInterrupted = 130
)

// Environment variables read by the runner.
const (
	cacheEnv   = "DMSNAP_CACHE"      // cache root, instead of <repo>/.cache/vm
	refreshEnv = "DMSNAP_VM_REFRESH" // 1: re-resolve the kernel through apt
	inVMEnv    = "DMSNAP_IN_VM"      // always 1 in the guest
)

// passEnv are copied from the host into the guest when set.
var passEnv = []string{"GOCOVERDIR", "GOFLAGS", "GOTRACEBACK"}

const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

func main() {
	if os.Getenv(sandboxEnv) == "1" {
		err := inOwnMountNamespace()
		if err == nil {
			err = enterSandbox()
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "vmrun: %v\n", err)
			os.Exit(exitFailure)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is the whole runner; it returns the process exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parseArgs(args, os.Getenv, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "vmrun: %v\n", err)
		return exitUsage
	}
	logw := io.Discard
	if o.verbose {
		logw = stderr
	}
	cache, err := cacheRoot()
	if err != nil {
		fmt.Fprintf(stderr, "vmrun: %v\n", err)
		return exitFailure
	}
	if o.cached {
		k, err := cachedKernel(cache, o.kernel)
		if err != nil || !toolsCached(cache, k, o.tools) {
			return 1
		}
		return 0
	}
	// Preparation is not bounded by --timeout (a first module build takes
	// minutes); the guest's run is.
	start := time.Now()
	k, tools, err := prepare(ctx, cache, o, os.Getenv(refreshEnv) == "1", logw, stderr)
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintf(stderr, "vmrun: interrupted while preparing the cache: %v\n", err)
			return exitInterrupted
		}
		fmt.Fprintf(stderr, "vmrun: %v\n", err)
		return exitFailure
	}
	fmt.Fprintf(logw, "vmrun: kernel %s ready in %v (%s)\n", k.Release, time.Since(start).Round(time.Millisecond), k.Dir)
	if o.setup {
		fmt.Fprintf(stdout, "%s\n", k.Release)
		return 0
	}
	ctx, cancel := context.WithTimeoutCause(ctx, o.timeout, errTimeout)
	defer cancel()
	code, err := boot(ctx, o, k, tools, stdout, stderr, logw)
	for attempt := 2; errors.Is(err, errBootFailed) && attempt <= bootAttempts; attempt++ {
		fmt.Fprintf(stderr, "vmrun: booting again (attempt %d of %d)\n", attempt, bootAttempts)
		code, err = boot(ctx, o, k, tools, stdout, stderr, logw)
	}
	if err != nil {
		fmt.Fprintf(stderr, "vmrun: %v\n", err)
	}
	return code
}

// errBootFailed reports a guest that died before the program started.
var errBootFailed = errors.New("guest kernel failed to boot")

// bootAttempts bounds the boots of one run; only boot failures retry.
const bootAttempts = 3

// errTimeout is the cause of the run's context when --timeout expires.
var errTimeout = errors.New("timeout")

// cacheRoot picks the cache directory: $DMSNAP_CACHE, else .cache/vm in the
// module containing the runner's executable, else in the module containing
// the working directory.
func cacheRoot() (string, error) {
	if c := os.Getenv(cacheEnv); c != "" {
		return filepath.Abs(c)
	}
	if exe, err := os.Executable(); err == nil {
		if r := findModuleRoot(filepath.Dir(exe)); r != "" {
			return filepath.Join(r, ".cache", "vm"), nil
		}
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	if r := findModuleRoot(wd); r != "" {
		return filepath.Join(r, ".cache", "vm"), nil
	}
	return "", fmt.Errorf("no go.mod above %s; set %s", wd, cacheEnv)
}

// findModuleRoot returns the nearest directory at or above dir holding a
// go.mod, or "".
func findModuleRoot(dir string) string {
	for {
		if st, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil && !st.IsDir() {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// guestEnv builds the guest environment: PATH, HOME, DMSNAP_VM_KERNEL, the
// pass-through variables, then --env; DMSNAP_IN_VM=1 always wins.
func guestEnv(o *options, tools *guestTools, getenv func(string) string) []string {
	path := getenv("PATH")
	if path == "" {
		path = defaultPath
	}
	// The tools unpacked under the cache come first, so the guest never
	// runs a host-installed zfs or lvm by accident.
	path = strings.Join(append(append([]string(nil), tools.binDirs...), path), ":")
	libs := tools.libDirs
	if l := getenv("LD_LIBRARY_PATH"); l != "" {
		libs = append(append([]string(nil), libs...), l)
	}
	vals := map[string]string{}
	var order []string
	set := func(k, v string) {
		if _, ok := vals[k]; !ok {
			order = append(order, k)
		}
		vals[k] = v
	}
	set("PATH", path)
	if len(libs) > 0 {
		set("LD_LIBRARY_PATH", strings.Join(libs, ":"))
	}
	set("HOME", "/root")
	set(kernelEnv, o.kernel)
	for _, k := range passEnv {
		if v := getenv(k); v != "" {
			set(k, v)
		}
	}
	for _, kv := range o.env {
		k, v, _ := strings.Cut(kv, "=")
		set(k, v)
	}
	set(inVMEnv, "1")
	out := make([]string, len(order))
	for i, k := range order {
		out[i] = k + "=" + vals[k]
	}
	return out
}

// extraModules resolves --modules: names are looked up in the kernel's
// modules.dep; values ending in .ko are host files (e.g. dkms-built
// modules) whose dependencies come from their .modinfo. Dependencies are
// added and the base set is skipped. It returns the insmod order and the
// files to add to the initramfs (name -> host path).
func extraModules(k *kernelCache, want []string) ([]string, map[string]string, error) {
	files := map[string]string{}
	if len(want) == 0 {
		return nil, files, nil
	}
	deps, err := k.deps()
	if err != nil {
		return nil, nil, err
	}
	names := make([]string, len(want))
	for i, w := range want {
		names[i] = w
		if strings.HasSuffix(w, ".ko") {
			abs, err := filepath.Abs(w)
			if err != nil {
				return nil, nil, err
			}
			if names[i], err = deps.addFile(abs); err != nil {
				return nil, nil, fmt.Errorf("module %s: %w", w, err)
			}
		}
	}
	loaded := map[string]bool{}
	for _, m := range k.BaseModules {
		loaded[m] = true
	}
	order, err := deps.loadOrder(names, loaded)
	if err != nil {
		return nil, nil, err
	}
	for _, n := range order {
		p, err := k.moduleFile(deps, n)
		if err != nil {
			return nil, nil, err
		}
		files[n] = p
	}
	return order, files, nil
}

// boot runs the program in a guest and returns the exit status.
func boot(ctx context.Context, o *options, k *kernelCache, tools *guestTools, stdout, stderr, logw io.Writer) (int, error) {
	cwd, err := os.Getwd()
	if err != nil {
		return exitFailure, err
	}
	shareDirs := append([]string{cwd, findModuleRoot(cwd)}, o.shares...)
	if d := os.Getenv("GOCOVERDIR"); d != "" {
		if st, err := os.Stat(d); err == nil && st.IsDir() {
			shareDirs = append(shareDirs, d)
		}
	}
	for _, d := range o.shares {
		if st, err := os.Stat(d); err != nil || !st.IsDir() {
			return exitUsage, fmt.Errorf("--share %s: not a directory", d)
		}
	}
	extraOrder, extraFiles, err := extraModules(k, append(append([]string(nil), o.modules...), tools.modules...))
	if err != nil {
		return exitFailure, fmt.Errorf("--modules: %w", err)
	}
	spec := &guestSpec{
		Modules: append(append([]string(nil), k.BaseModules...), extraOrder...),
		Shares:  planShares(shareDirs),
		Cwd:     cwd,
		Env:     guestEnv(o, tools, os.Getenv),
		Program: o.program,
		Args:    o.args,
	}

	work, err := os.MkdirTemp("", "vmrun-")
	if err != nil {
		return exitFailure, err
	}
	defer os.RemoveAll(work)
	initrd := filepath.Join(work, "initrd.cpio")
	if err := buildInitrd(initrd, k, spec, extraFiles); err != nil {
		return exitFailure, fmt.Errorf("initramfs: %w", err)
	}
	console := o.console
	if console == "" {
		console = filepath.Join(work, "console.log")
	}

	accel, err := chooseAccel(o.kvm)
	if err != nil {
		return exitFailure, err
	}
	qargs := qemuArgs(o, k, initrd, console, accel, spec.Shares)
	fmt.Fprintf(logw, "vmrun: qemu-system-x86_64 %s\n", strings.Join(qargs, " "))

	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", qargs...)
	cmd.Stdin = nil // /dev/null: qemu never touches a terminal
	out := &crStripper{w: stdout}
	cmd.Stdout = out
	cmd.Stderr = stderr
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	runErr := cmd.Run()
	flushErr := out.Flush()
	fmt.Fprintf(logw, "vmrun: guest ran %v\n", time.Since(start).Round(time.Millisecond))

	logData, _ := os.ReadFile(console)
	if errors.Is(context.Cause(ctx), errTimeout) {
		fmt.Fprintf(stderr, "vmrun: timeout after %v: killed qemu; console tail:\n%s", o.timeout, tailLines(string(logData), 60))
		return exitTimeout, nil
	}
	if ctx.Err() != nil {
		return exitInterrupted, fmt.Errorf("interrupted: %w", ctx.Err())
	}
	code, ok, failure := parseConsole(string(logData))
	if !ok {
		msg := "guest reported no exit status"
		if failure != "" {
			msg = "guest init failed: " + failure
		}
		if runErr != nil {
			msg += " (qemu: " + runErr.Error() + ")"
		}
		if failure == "" && !strings.Contains(string(logData), startMarker) {
			// The kernel died before /init started the program (seen under
			// TCG on a loaded host: "IO-APIC + timer doesn't work"). The
			// program never ran, so the caller may boot again.
			fmt.Fprintf(stderr, "vmrun: %s before the program started; console tail (%s):\n%s", msg, k.Release, tailLines(string(logData), 20))
			return exitFailure, errBootFailed
		}
		fmt.Fprintf(stderr, "vmrun: %s; console tail (%s):\n%s", msg, k.Release, tailLines(string(logData), 60))
		return exitFailure, nil
	}
	if runErr != nil {
		fmt.Fprintf(logw, "vmrun: qemu: %v\n", runErr)
	}
	if flushErr != nil {
		return exitFailure, fmt.Errorf("write output: %w", flushErr)
	}
	return code, nil
}

// buildInitrd concatenates base.cpio and the per-run archive into path.
func buildInitrd(path string, k *kernelCache, spec *guestSpec, extra map[string]string) error {
	runCpio := path + ".run"
	if err := writeRunCpio(runCpio, spec, extra); err != nil {
		return err
	}
	defer os.Remove(runCpio)
	dst, err := os.Create(path)
	if err != nil {
		return err
	}
	defer dst.Close()
	for _, p := range []string{k.baseCpio(), runCpio} {
		src, err := os.Open(p)
		if err != nil {
			return err
		}
		_, err = io.Copy(dst, src)
		src.Close()
		if err != nil {
			return err
		}
	}
	return dst.Close()
}

// chooseAccel resolves --kvm to "kvm" or "tcg".
func chooseAccel(mode string) (string, error) {
	switch mode {
	case "on":
		return "kvm", nil
	case "off":
		return "tcg", nil
	}
	f, openErr := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if openErr == nil {
		f.Close()
	}
	cpuinfo, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "tcg", nil
	}
	if kvmUsable(string(cpuinfo), openErr) {
		return "kvm", nil
	}
	return "tcg", nil
}

// qemuArgs builds the qemu command line: no firmware ROMs or default
// devices, qboot, PVH boot of vmlinux, ttyS0 to the console file, ttyS1 to
// stdout, the host root read-only and each share read-write over virtio-9p.
func qemuArgs(o *options, k *kernelCache, initrd, console, accel string, shares []share) []string {
	cpu := "max"
	if accel == "kvm" {
		cpu = "host"
	}
	args := []string{
		"-accel", accel, "-cpu", cpu,
		"-bios", "/usr/share/qemu/qboot.rom",
		"-m", fmt.Sprint(o.memMiB), "-smp", fmt.Sprint(o.smp),
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-chardev", "file,id=con0,path=" + qemuEscape(console),
		"-serial", "chardev:con0",
		"-chardev", "stdio,id=out0,signal=off",
		"-serial", "chardev:out0",
		"-kernel", k.vmlinux(),
		"-initrd", initrd,
		"-append", "console=ttyS0 panic=-1 loglevel=4 cryptomgr.notests no_timer_check",
		"-virtfs", "local,path=/,mount_tag=" + hostRootTag + ",security_model=none,readonly=on,multidevs=remap",
	}
	for _, s := range shares {
		args = append(args, "-virtfs", "local,path="+qemuEscape(s.Path)+",mount_tag="+s.Tag+",security_model=none,multidevs=remap")
	}
	return args
}

// crStripper copies to w, dropping each '\r' that directly precedes '\n'
// (a lone '\r' is kept).
type crStripper struct {
	w       io.Writer
	pending bool // a '\r' was held back at the end of the last write
	buf     []byte
}

func (c *crStripper) Write(p []byte) (int, error) {
	c.buf = c.buf[:0]
	for _, b := range p {
		if c.pending {
			c.pending = false
			if b != '\n' {
				c.buf = append(c.buf, '\r')
			}
		}
		if b == '\r' {
			c.pending = true
			continue
		}
		c.buf = append(c.buf, b)
	}
	if _, err := c.w.Write(c.buf); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Flush writes a held-back '\r'.
func (c *crStripper) Flush() error {
	if !c.pending {
		return nil
	}
	c.pending = false
	_, err := c.w.Write([]byte{'\r'})
	return err
}
