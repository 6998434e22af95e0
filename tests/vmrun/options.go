package main

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"strconv"
	"strings"
	"time"
)

// Kernel flavours the runner can boot. Each names a Debian suite from which
// the linux-image-amd64 metapackage is resolved.
const (
	kernelBookworm  = "bookworm"
	kernelBackports = "backports"
)

// kernelEnv overrides the default --kernel.
const kernelEnv = "DMSNAP_VM_KERNEL"

// errUsage marks command-line errors (exit status 2).
var errUsage = errors.New("usage")

// options is the parsed command line.
type options struct {
	kernel  string
	timeout time.Duration
	memMiB  int
	smp     int
	env     []string // K=V from --env, in order
	modules []string // extra module names or .ko paths
	shares  []string // extra read-write shares
	tools   []string // --tools: zfs, lvm2
	setup   bool
	cached  bool
	kvm     string // auto|on|off
	console string
	verbose bool

	program string
	args    []string
}

// listFlag collects a repeatable flag; with split set, each value may also
// be a comma-separated list.
type listFlag struct {
	dst   *[]string
	split bool
}

func (l listFlag) String() string {
	if l.dst == nil {
		return ""
	}
	return strings.Join(*l.dst, ",")
}

func (l listFlag) Set(v string) error {
	if !l.split {
		*l.dst = append(*l.dst, v)
		return nil
	}
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l.dst = append(*l.dst, s)
		}
	}
	return nil
}

// durationFlag accepts a Go duration ("300s", "5m") or plain seconds ("300").
type durationFlag struct{ dst *time.Duration }

func (d durationFlag) String() string {
	if d.dst == nil {
		return ""
	}
	return d.dst.String()
}

func (d durationFlag) Set(v string) error {
	if n, err := strconv.Atoi(v); err == nil {
		*d.dst = time.Duration(n) * time.Second
	} else {
		t, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("invalid duration %q", v)
		}
		*d.dst = t
	}
	if *d.dst <= 0 {
		return fmt.Errorf("duration must be positive: %q", v)
	}
	return nil
}

// parseArgs parses the runner's flags. Parsing stops at the first non-flag
// argument (or after "--"): that argument is the program and everything
// after it belongs to the program, so that `go test -exec vmrun` can append
// -test.* flags. getenv supplies the environment defaults.
func parseArgs(args []string, getenv func(string) string, stderr io.Writer) (*options, error) {
	o := &options{
		kernel:  kernelBookworm,
		timeout: 600 * time.Second,
		memMiB:  1024,
		smp:     1,
		kvm:     "auto",
	}
	if k := getenv(kernelEnv); k != "" {
		o.kernel = k
	}
	fs := flag.NewFlagSet("vmrun", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: vmrun [flags] PROGRAM [ARGS...]\n"+
			"Runs PROGRAM inside a QEMU guest booting a Debian kernel (see go doc ./tests/vmrun).\n"+
			"Exit status: the program's; 2 usage; 124 timeout; 125 runner or guest failure; 130 interrupted.\n\nflags:\n")
		fs.PrintDefaults()
	}
	fs.StringVar(&o.kernel, "kernel", o.kernel, "kernel to boot: bookworm|backports (default from $"+kernelEnv+")")
	fs.Var(durationFlag{&o.timeout}, "timeout", "hard limit for the whole run; on expiry qemu is killed and vmrun exits 124")
	fs.IntVar(&o.memMiB, "mem", o.memMiB, "guest memory in MiB")
	fs.IntVar(&o.smp, "smp", o.smp, "guest vCPUs (more is slower under TCG)")
	fs.Var(listFlag{&o.env, false}, "env", "K=V to set in the guest (repeatable)")
	fs.Var(listFlag{&o.modules, true}, "modules", "extra kernel modules to load, by name or as a .ko path (comma-separated, repeatable)")
	fs.Var(listFlag{&o.shares, false}, "share", "extra host directory shared read-write at the same path (repeatable)")
	fs.Var(listFlag{&o.tools, true}, "tools", "tools from Debian packages unpacked under the cache, first in the guest's PATH: zfs (OpenZFS userland + module built for the kernel), lvm2 (comma-separated)")
	fs.BoolVar(&o.setup, "setup", false, "prepare the cache for the kernel and tools and exit without booting")
	fs.BoolVar(&o.cached, "cached", false, "exit 0 if the kernel and tools are prepared, 1 otherwise; changes nothing")
	fs.StringVar(&o.kvm, "kvm", o.kvm, "hardware acceleration: auto|on|off")
	fs.StringVar(&o.console, "console", "", "write the kernel console log to this file (default: a temporary file)")
	fs.BoolVar(&o.verbose, "v", false, "print progress and the qemu command line on stderr")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %v", errUsage, err)
	}
	switch o.kernel {
	case kernelBookworm, kernelBackports:
	default:
		return nil, fmt.Errorf("%w: --kernel %q: want %s or %s", errUsage, o.kernel, kernelBookworm, kernelBackports)
	}
	switch o.kvm {
	case "auto", "on", "off":
	default:
		return nil, fmt.Errorf("%w: --kvm %q: want auto, on or off", errUsage, o.kvm)
	}
	if o.memMiB < 128 {
		return nil, fmt.Errorf("%w: --mem %d: at least 128 MiB", errUsage, o.memMiB)
	}
	if o.smp < 1 {
		return nil, fmt.Errorf("%w: --smp %d: at least 1", errUsage, o.smp)
	}
	for _, kv := range o.env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" || strings.ContainsAny(k, " \t\n") {
			return nil, fmt.Errorf("%w: --env %q: want K=V", errUsage, kv)
		}
	}
	for _, t := range o.tools {
		if _, ok := toolSpecs[t]; !ok {
			return nil, fmt.Errorf("%w: --tools %q: want %s or %s", errUsage, t, toolZFS, toolLVM2)
		}
	}
	rest := fs.Args()
	if !o.setup && !o.cached {
		if len(rest) == 0 {
			fs.Usage()
			return nil, fmt.Errorf("%w: missing PROGRAM", errUsage)
		}
		o.program, o.args = rest[0], rest[1:]
	} else if len(rest) > 0 {
		return nil, fmt.Errorf("%w: --setup and --cached take no PROGRAM", errUsage)
	}
	return o, nil
}
