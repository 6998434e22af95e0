package zfs

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// reply is a scripted command result.
type reply struct {
	stdout, stderr string
	err            error // nil means exit 0
}

// fakeExec answers commands from a script keyed by "name arg1 arg2 ...".
// Unknown commands fail the test.
type fakeExec struct {
	t      testing.TB
	mu     sync.Mutex
	script map[string]reply
	calls  [][]string // name + args
	stdins []string
}

var errExit1 = errors.New("exit status 1")

func newFake(t testing.TB, script map[string]reply) *fakeExec {
	return &fakeExec{t: t, script: script}
}

func (f *fakeExec) Run(_ context.Context, name string, args []string, stdin io.Reader, stdout io.Writer) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, append([]string{name}, args...))
	in := ""
	if stdin != nil {
		b, _ := io.ReadAll(stdin)
		in = string(b)
	}
	f.stdins = append(f.stdins, in)
	key := strings.Join(append([]string{name}, args...), " ")
	r, ok := f.script[key]
	if !ok {
		f.t.Errorf("unexpected command %q", key)
		return []byte("unexpected"), errExit1
	}
	if stdout != nil {
		_, _ = io.WriteString(stdout, r.stdout)
	}
	return []byte(r.stderr), r.err
}

// observed records Observer calls.
type observed struct {
	mu    sync.Mutex
	calls []string
	errs  []error
}

func (o *observed) CommandDone(binary, verb string, d time.Duration, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if d < 0 {
		panic("negative duration")
	}
	o.calls = append(o.calls, binary+" "+verb)
	o.errs = append(o.errs, err)
}

func readTestdata(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
