package lvm2

import (
	"context"
	"errors"
	"strings"
)

// fakeCall is one command a fakeExec was asked to run.
type fakeCall struct {
	name string
	args []string
	env  []string
}

// fakeResult answers a command whose argv starts with prefix.
type fakeResult struct {
	prefix         string
	stdout, stderr string
	err            error
}

// fakeExec records calls and answers them from results (first matching
// prefix of "command args..." wins); an unmatched command fails.
type fakeExec struct {
	results []fakeResult
	calls   []fakeCall
}

func (f *fakeExec) Run(_ context.Context, name string, args []string, env []string) ([]byte, []byte, error) {
	f.calls = append(f.calls, fakeCall{name: name, args: args, env: env})
	line := strings.Join(args, " ")
	for _, r := range f.results {
		if strings.HasPrefix(line, r.prefix) {
			return []byte(r.stdout), []byte(r.stderr), r.err
		}
	}
	return nil, []byte("fake: unexpected command " + line), errors.New("exit status 5")
}

// commands returns the argv of each call joined by spaces.
func (f *fakeExec) commands() []string {
	var c []string
	for _, call := range f.calls {
		c = append(c, strings.Join(call.args, " "))
	}
	return c
}
