package lvm2

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"time"
)

// Executor runs one program with arguments, no shell involved, and returns
// its standard output and standard error. err is nil only if the program
// ran and exited 0; a missing program yields an error answering
// errors.Is(err, exec.ErrNotFound) or errors.Is(err, fs.ErrNotExist).
//
// Tests substitute a fake; [ExecExecutor] is the real one.
type Executor interface {
	Run(ctx context.Context, name string, args []string, env []string) (stdout, stderr []byte, err error)
}

// ExecExecutor is the [Executor] backed by os/exec. env is appended to
// the caller's environment.
type ExecExecutor struct{}

// Run implements [Executor].
func (ExecExecutor) Run(ctx context.Context, name string, args []string, env []string) ([]byte, []byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if err != nil && ctx.Err() != nil {
		err = errors.Join(ctx.Err(), err)
	}
	return stdout.Bytes(), stderr.Bytes(), err
}

// Runner is the one exec wrapper of the package: every LVM2 command goes
// through [Runner.Run]. The zero value runs "lvm" from $PATH with
// [ExecExecutor]. A Runner is safe for concurrent use if its Executor is.
type Runner struct {
	// LVM is the lvm program; empty means "lvm" from $PATH.
	LVM string
	// Exec runs the program; nil means ExecExecutor.
	Exec Executor
	// Env is added to the inherited environment of every command, e.g.
	// LVM_SYSTEM_DIR or DM_DISABLE_UDEV=1. LVM_SUPPRESS_FD_WARNINGS=1 is
	// always added.
	Env []string
	// Config, if set, is passed as --config to every command, e.g. the
	// udev-less settings of docs/testing.md.
	Config string
}

// Commands accepted by [Runner.Run].
var knownCommands = map[string]bool{
	"lvs": true, "vgs": true, "pvs": true, "lvcreate": true, "lvremove": true,
	"lvextend": true, "lvrename": true, "lvconvert": true, "lvchange": true,
	"lvpoll": true, "version": true,
}

// Run runs "lvm command args..." plus --config when set, and returns its
// standard output and standard error. object names what the command is
// about, for error messages only. On failure it returns a *[CommandError]
// answering errors.Is for the sentinel classified from standard error
// ([ErrNotFound], [ErrExists], [ErrNoSpace], [ErrBusy], [ErrLocked],
// [ErrMerging], [ErrPermission], [ErrInvalidName]), for [ErrNotInstalled]
// when the program is missing, and for the context error when ctx ended.
func (r *Runner) Run(ctx context.Context, command string, args []string, object string) (stdout, stderr []byte, err error) {
	if !knownCommands[command] {
		return nil, nil, errors.New("lvm2 runner: unknown command " + strings.TrimSpace(command))
	}
	argv := r.argv(command, args)
	stdout, stderr, err = r.executor().Run(ctx, r.program(), argv, r.env())
	if err != nil {
		return stdout, stderr, newCommandError(command, args, object, stderr, err)
	}
	return stdout, stderr, nil
}

func (r *Runner) argv(command string, args []string) []string {
	argv := append([]string{command}, args...)
	if r.Config != "" {
		argv = append(argv, "--config", r.Config)
	}
	return argv
}

func (r *Runner) program() string {
	if r.LVM != "" {
		return r.LVM
	}
	return "lvm"
}

func (r *Runner) executor() Executor {
	if r.Exec != nil {
		return r.Exec
	}
	return ExecExecutor{}
}

func (r *Runner) env() []string {
	return append(append([]string(nil), r.Env...), "LVM_SUPPRESS_FD_WARNINGS=1")
}

func isNotFound(err error) bool {
	return errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist)
}
