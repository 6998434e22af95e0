// Command dmsnap manages device-mapper snapshots of LVM-style volumes.
//
// main builds the root context, runs the app and maps every error to an exit
// status in one place (exitCode). Nothing below main calls os.Exit.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() { os.Exit(runMain(os.Args)) }

// runMain is main without the exit, for tests that run the test binary
// as dmsnap with main's signal handling.
func runMain(args []string) int {
	// A signal cancels ctx; cleanup paths (resume, remove) run under
	// context.WithoutCancel so they still complete. SIGHUP (the ssh
	// session dropped) is a request to stop like SIGTERM, not a kill in
	// the middle of a suspend window. SIGPIPE is ignored, so a closed
	// stdout or stderr (dmsnap -v ... | head -1) turns writes into EPIPE
	// errors instead of killing the process.
	signal.Ignore(syscall.SIGPIPE)
	ctx, stop := signal.NotifyContext(context.Background(), terminating...)
	defer stop()
	return run(ctx, args, os.Stdout, os.Stderr)
}

// terminating are the signals that cancel the root context.
var terminating = []os.Signal{os.Interrupt, syscall.SIGTERM, syscall.SIGHUP}
