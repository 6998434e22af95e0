package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/dmsnap/dmsnap/dm"
	"github.com/urfave/cli/v2"
	"github.com/xrash/smetrics"
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
	msg := dedupeTail(explain(err))
	if g.JSON {
		b, _ := json.Marshal(jsonError{MessageType: "exit_error", Code: code, Message: msg})
		fmt.Fprintln(g.stderr, string(b))
		return
	}
	fmt.Fprintf(g.stderr, "dmsnap: %s\n", msg)
}

// goFlagName matches a flag name as Go's flag package prints it in its
// errors: one dash, whatever the user typed.
var goFlagName = regexp.MustCompile(`(provided but not defined: |for flag |for |needs an argument: )-([^\s:=]+)`)

// flagError rewrites a flag parsing error of the command c for people:
// flag names as they are written (--json, -L), and for an unknown flag
// the nearest one of the command's and the global flags, the suggestion
// urfave/cli makes when it prints errors itself (OnUsageError replaces
// that).
func flagError(c *cli.Context, err error) error {
	msg := goFlagName.ReplaceAllStringFunc(err.Error(), func(m string) string {
		sub := goFlagName.FindStringSubmatch(m)
		return sub[1] + dashed(sub[2])
	})
	if names, ok := strings.CutPrefix(err.Error(), "Cannot use two forms of the same flag: "); ok {
		if a, b, ok := strings.Cut(names, " "); ok {
			msg = fmt.Sprintf("%s and %s are the same flag: give it once", dashed(b), dashed(a))
		}
	}
	if name, ok := strings.CutPrefix(err.Error(), "flag provided but not defined: -"); ok {
		flags := append([]cli.Flag{cli.HelpFlag}, c.App.Flags...)
		if c.Command != nil {
			flags = append(flags, c.Command.Flags...)
		}
		var names []string
		for _, f := range flags {
			if v, ok := f.(cli.VisibleFlag); !ok || v.IsVisible() {
				names = append(names, f.Names()...)
			}
		}
		msg = "unknown flag " + dashed(name)
		if s := nearest(names, name); s != "" {
			msg += "; did you mean " + dashed(s) + "?"
		}
	}
	return errors.New(msg)
}

// dashed writes a flag name with the dashes the help shows.
func dashed(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// suggestCommand names the subcommand of c nearest to name, as
// ` (did you mean "x"?)`, or returns "".
func suggestCommand(c *cli.Context, name string) string {
	cmds := c.App.Commands
	if c.Command != nil && len(c.Command.Subcommands) > 0 {
		cmds = c.Command.Subcommands
	}
	var names []string
	for _, cmd := range cmds {
		if !cmd.Hidden {
			names = append(names, cmd.Names()...)
		}
	}
	if s := nearest(names, name); s != "" {
		return fmt.Sprintf(" (did you mean %q?)", s)
	}
	return ""
}

// nearest returns the name closest to s by Jaro-Winkler similarity, as
// urfave/cli's suggestions measure it, or "" if none is close: urfave
// always names the best match, however poor ("nope" → "help").
func nearest(names []string, s string) string {
	const minSimilarity = 0.8
	best, score := "", minSimilarity
	for _, n := range names {
		if d := smetrics.JaroWinkler(n, s, 0.7, 4); d >= score && (best == "" || d > score) {
			best, score = n, d
		}
	}
	return best
}

// dedupeTail drops a final ": TEXT" that the message already says, as in
// "pool vg already exists (uuid …): already exists", where TEXT is a
// wrapped sentinel kept for errors.Is.
func dedupeTail(msg string) string {
	for {
		i := strings.LastIndex(msg, ": ")
		if i < 0 || !strings.Contains(msg[:i], msg[i+2:]) {
			return msg
		}
		msg = msg[:i]
	}
}
