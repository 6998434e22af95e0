package zfs

import (
	"errors"
	"fmt"
	"os/exec"
)

// CheckRemoteArg rejects an argument that a shell would not pass through
// verbatim. ssh(1) joins the remote command's arguments with spaces and
// hands the string to the remote user's shell, so with [Runner.Via] every
// zfs argument must mean the same to any POSIX shell as it does in argv:
// non-empty, made only of A-Z a-z 0-9 and _ . , : / @ # = + - (no
// quoting, expansion, globbing or separators), and not starting with '#'
// (a comment). Names zfs accepts that fall
// outside this set (a space, '%') cannot be used remotely. Errors wrap
// [ErrInvalidName].
func CheckRemoteArg(arg string) error {
	if arg == "" || arg[0] == '#' {
		return fmt.Errorf("remote argument %q: %w", arg, ErrInvalidName)
	}
	for _, c := range arg {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '_' || c == '.' || c == ',' || c == ':' || c == '/' || c == '@' || c == '#' || c == '=' || c == '+' || c == '-':
		default:
			return fmt.Errorf("remote argument %q: character %q needs shell quoting: %w", arg, c, ErrInvalidName)
		}
	}
	return nil
}

// viaArgv returns the program and argv that run program with args through
// r.Via, after checking every word the remote shell will parse.
func (r *Runner) viaArgv(program string, args []string) (string, []string, error) {
	for _, a := range append([]string{program}, args...) {
		if err := CheckRemoteArg(a); err != nil {
			return "", nil, err
		}
	}
	argv := make([]string, 0, len(r.Via)-1+1+len(args))
	argv = append(argv, r.Via[1:]...)
	argv = append(argv, program)
	argv = append(argv, args...)
	return r.Via[0], argv, nil
}

// viaClassify adjusts the sentinel of a command run through Runner.Via:
// a missing local wrapper (ssh) is not a missing zfs, and a remote shell
// that cannot find the program exits 127 (POSIX "command not found",
// which ssh passes on as its own exit status).
func viaClassify(sentinel, cause error) error {
	if isNotFound(cause) {
		return nil // the cause names the wrapper that is missing
	}
	var ee *exec.ExitError
	if sentinel == nil && errors.As(cause, &ee) && ee.ExitCode() == 127 {
		return ErrZFSNotInstalled
	}
	return sentinel
}
