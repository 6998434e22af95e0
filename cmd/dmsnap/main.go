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

func main() {
	// A signal cancels ctx; cleanup paths (resume, remove) run under
	// context.WithoutCancel so they still complete.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
