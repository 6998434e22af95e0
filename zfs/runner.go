package zfs

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"
)

// Executor runs one program with arguments, no shell involved. It feeds
// stdin (nil means no input) to the program, copies its standard output to
// stdout (nil discards it), and returns everything the program wrote to
// standard error. err is nil only if the program ran and exited 0; a
// program that cannot be found must yield an error that answers
// errors.Is(err, exec.ErrNotFound) or errors.Is(err, fs.ErrNotExist).
// Run must return soon after ctx is cancelled.
//
// Tests substitute a fake; [ExecExecutor] is the real one.
type Executor interface {
	Run(ctx context.Context, name string, args []string, stdin io.Reader, stdout io.Writer) (stderr []byte, err error)
}

// ExecExecutor is the [Executor] backed by os/exec. Env, if non-nil, is the
// complete environment of the child (see exec.Cmd.Env); nil inherits the
// caller's. WaitDelay bounds how long Run waits for the child's pipes after
// ctx is cancelled and the child killed (0 means 5 s).
type ExecExecutor struct {
	Env       []string
	WaitDelay time.Duration
}

// Run implements [Executor].
func (e ExecExecutor) Run(ctx context.Context, name string, args []string, stdin io.Reader, stdout io.Writer) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = e.Env
	cmd.Stdin = stdin
	if stdout == nil {
		stdout = io.Discard
	}
	cmd.Stdout = stdout
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.WaitDelay = e.WaitDelay
	if cmd.WaitDelay == 0 {
		cmd.WaitDelay = 5 * time.Second
	}
	err := cmd.Run()
	if err != nil && ctx.Err() != nil {
		err = errors.Join(ctx.Err(), err)
	}
	return stderr.Bytes(), err
}

// Observer is told about every command the [Runner] ran, once it ended.
// binary is the base name of the program ("zfs", "zpool"), verb its first
// argument ("list", "send", ...): both come from small fixed sets, so a
// metrics adapter may use them as labels. err is the error the Runner
// returns (nil on success). Observers must be safe for concurrent use and
// must not block.
type Observer interface {
	CommandDone(binary, verb string, d time.Duration, err error)
}

// NopObserver is the default [Observer]; it does nothing.
type NopObserver struct{}

// CommandDone implements [Observer].
func (NopObserver) CommandDone(string, string, time.Duration, error) {}

// Runner is the one exec wrapper of the package: every zfs(8) and zpool(8)
// invocation goes through [Runner.Run]. It never involves a shell, so
// names such as "pool/vol#bm" are passed verbatim. The zero value is
// usable: it runs "zfs" and "zpool" from $PATH with [ExecExecutor] and
// [NopObserver]. A Runner is safe for concurrent use if its Executor and
// Observer are.
type Runner struct {
	// ZFS and ZPool are the program paths; empty means "zfs" and "zpool".
	ZFS, ZPool string
	// ZvolID is the path of zvol_id; empty means [ZvolIDPath].
	ZvolID string
	// Exec runs the programs; nil means ExecExecutor{Env: Env}.
	Exec Executor
	// Env is the child environment for the default executor (nil
	// inherits). Ignored when Exec is set.
	Env []string
	// Observer is told about each command; nil means NopObserver.
	Observer Observer
	// Via, if set, is a program and its leading arguments that run every
	// command elsewhere, e.g. {"ssh", "backup1"}: [Runner.Run] then
	// executes Via[0] with Via[1:], the zfs or zpool path and the
	// command's arguments. See [CheckRemoteArg] for what Run refuses then.
	Via []string
}

// Binary names accepted by [Runner.Run].
const (
	BinZFS    = "zfs"
	BinZPool  = "zpool"
	BinZvolID = "zvol_id" // udev's helper: the dataset of a /dev/zd* node
)

func (r *Runner) path(binary string) string {
	switch binary {
	case BinZFS:
		if r.ZFS != "" {
			return r.ZFS
		}
	case BinZPool:
		if r.ZPool != "" {
			return r.ZPool
		}
	case BinZvolID:
		if r.ZvolID != "" {
			return r.ZvolID
		}
		return ZvolIDPath()
	}
	return binary
}

func (r *Runner) executor() Executor {
	if r.Exec != nil {
		return r.Exec
	}
	return ExecExecutor{Env: r.Env}
}

func (r *Runner) observer() Observer {
	if r.Observer != nil {
		return r.Observer
	}
	return NopObserver{}
}

// Run runs binary ([BinZFS], [BinZPool] or [BinZvolID]) with args, feeding stdin and
// copying standard output to stdout. dataset names the object the command
// is about, for error messages only (may be empty). On failure it returns a
// *[CommandError] that quotes the command and its standard error and
// answers errors.Is for the sentinel classified from that text
// ([ErrDatasetNotFound], [ErrExists], [ErrBusy], [ErrNoModule],
// [ErrPermission], [ErrResumeTokenInvalid], [ErrIncrementalMismatch],
// [ErrDestinationModified]), for [ErrZFSNotInstalled] when the program is
// missing, and for context.Canceled/DeadlineExceeded when ctx ended.
// With [Runner.Via] set, an argument that fails [CheckRemoteArg] is refused
// before anything runs (an error wrapping [ErrInvalidName]).
func (r *Runner) Run(ctx context.Context, binary string, args []string, dataset string, stdin io.Reader, stdout io.Writer) error {
	if binary != BinZFS && binary != BinZPool && binary != BinZvolID {
		return errors.New("zfs runner: unknown binary " + strings.TrimSpace(binary))
	}
	verb := ""
	if len(args) > 0 {
		verb = args[0]
	}
	name, argv := r.path(binary), args
	if len(r.Via) > 0 {
		var err error
		if name, argv, err = r.viaArgv(name, args); err != nil {
			return err
		}
	}
	start := time.Now()
	stderr, err := r.executor().Run(ctx, name, argv, stdin, stdout)
	if err != nil {
		ce := newCommandError(binary, args, dataset, stderr, err)
		if len(r.Via) > 0 {
			ce.Err = viaClassify(ce.Err, err)
		}
		err = ce
	}
	r.observer().CommandDone(binary, boundedVerb(verb), time.Since(start), err)
	return err
}

// output runs a zfs command and returns its standard output.
func (r *Runner) output(ctx context.Context, dataset string, args ...string) ([]byte, error) {
	var out bytes.Buffer
	err := r.Run(ctx, BinZFS, args, dataset, nil, &out)
	return out.Bytes(), err
}

// knownVerbs bounds the verb label given to the Observer.
var knownVerbs = map[string]bool{
	"list": true, "get": true, "set": true, "create": true, "destroy": true,
	"snapshot": true, "bookmark": true, "rollback": true, "send": true,
	"receive": true, "recv": true, "version": true, "status": true,
	"import": true, "export": true, "hold": true, "release": true,
	"inherit": true, "-V": true, "--version": true,
}

func boundedVerb(v string) string {
	if knownVerbs[v] {
		return v
	}
	return "other"
}

// isNotFound reports whether err says the program does not exist.
func isNotFound(err error) bool {
	return errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist)
}
