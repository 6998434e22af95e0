package main

import (
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// TestHelpPages renders every command's --help and checks the pages
// against the mistakes they had: run-together paragraphs, a doubled
// default, a command without a description, and merge's help
// contradicting docs/cli.md.
func TestHelpPages(t *testing.T) {
	e := newCLIEnv(t)
	var walk func(path []string, cmds []*cli.Command)
	pages := 0
	walk = func(path []string, cmds []*cli.Command) {
		for _, c := range cmds {
			p := append(append([]string(nil), path...), c.Name)
			walk(p, c.Subcommands)
			code, out, errs := e.run(append(p, "--help")...)
			if code != 0 || errs != "" {
				t.Errorf("%s --help: exit %d: %s", strings.Join(p, " "), code, errs)
				continue
			}
			pages++
			for _, bad := range []string{". EXIT STATUS", "(default) (default", "SNAPDEV"} {
				if strings.Contains(out, bad) {
					t.Errorf("%s --help contains %q:\n%s", strings.Join(p, " "), bad, out)
				}
			}
			if len(c.Subcommands) == 0 && strings.HasPrefix(c.Description, "EXIT STATUS") {
				t.Errorf("%s has no description of its own", strings.Join(p, " "))
			}
		}
	}
	walk(nil, newApp(&globalOptions{}).Commands)
	if pages < 30 {
		t.Errorf("only %d help pages", pages)
	}

	// --help after the arguments is the command's help.
	if code, out, errs := e.run("lv", "create", "vg0/x", "-L", "1M", "--help"); code != 0 || !strings.Contains(out, "dmsnap lv create - ") {
		t.Errorf("lv create vg0/x -L 1M --help: exit %d: %s%s", code, out, errs)
	}

	_, out, _ := e.run("merge", "--help")
	for _, want := range []string{"[POOL/]SNAP", "recorded as\npending", "Delaying merge", "--force starts it now", "A bare device-mapper name"} {
		if !strings.Contains(strings.Join(strings.Fields(out), " "), strings.Join(strings.Fields(want), " ")) {
			t.Errorf("merge --help lacks %q", want)
		}
	}
	if strings.Contains(out, "not started") {
		t.Errorf("merge --help still says an open origin's merge is not started")
	}
	_, out, _ = e.run("--help")
	for _, cat := range []string{"Pools:", "Volumes:", "Snapshots:", "Merge:", "COW stores:", "ZFS:", "Monitoring:"} {
		if !strings.Contains(out, cat) {
			t.Errorf("dmsnap --help lacks the category %q", cat)
		}
	}
	for _, c := range newApp(&globalOptions{}).Commands {
		if c.Category == "" {
			t.Errorf("command %s has no category", c.Name)
		}
	}
}
