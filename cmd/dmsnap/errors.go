package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/dmsnap/dmsnap/dm"
)

// Exit statuses. Each command's help repeats the ones it can return.
const (
	exitOK          = 0
	exitError       = 1
	exitUsage       = 2
	exitPartial     = 3
	exitInterrupted = 130
)

const exitStatusHelp = `EXIT STATUS
   0    success
   1    error (nothing was changed unless the message says otherwise)
   2    usage error: bad flag, argument or value; nothing was changed
   3    partial: some objects were handled, others were not (see messages)
   130  interrupted by a signal; cleanup (resume, remove) still ran`

var errInterrupted = errors.New("interrupted")

// usageError marks a mistake in the command line: exit status 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usageErrorf(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// partialError reports that a command did part of its work: exit status 3.
type partialError struct{ err error }

func (e partialError) Error() string { return e.err.Error() }
func (e partialError) Unwrap() error { return e.err }

func exitCode(err error) int {
	var uerr usageError
	var perr partialError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, errInterrupted):
		return exitInterrupted
	case errors.As(err, &uerr):
		return exitUsage
	case isCLIUsage(err):
		return exitUsage
	case errors.As(err, &perr):
		return exitPartial
	default:
		return exitError
	}
}

// isCLIUsage recognises the errors urfave/cli returns for unknown commands
// and missing arguments, which do not pass through OnUsageError.
func isCLIUsage(err error) bool {
	msg := err.Error()
	return strings.HasPrefix(msg, "No help topic for") ||
		strings.HasPrefix(msg, "flag provided but not defined") ||
		strings.HasPrefix(msg, "Required flag")
}

// explain turns environment failures into one line a person can act on,
// instead of a chain of errno text.
func explain(err error) string {
	switch {
	case errors.Is(err, dm.ErrNoDeviceMapper):
		return "device-mapper is not available on this host (no /dev/mapper/control; load the dm-mod module, or run inside the test VM: make demo)"
	case errors.Is(err, dm.ErrPermission):
		return "permission denied: device-mapper needs root (CAP_SYS_ADMIN)"
	}
	return err.Error()
}

type jsonError struct {
	MessageType string `json:"message_type"` // always "exit_error"
	Code        int    `json:"code"`
	Message     string `json:"message"`
}

func printError(g *globalOptions, err error, code int) {
	msg := explain(err)
	if g.JSON {
		b, _ := json.Marshal(jsonError{MessageType: "exit_error", Code: code, Message: msg})
		fmt.Fprintln(g.stderr, string(b))
		return
	}
	fmt.Fprintf(g.stderr, "dmsnap: %s\n", msg)
}
