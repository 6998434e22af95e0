package main

import (
	"strings"

	"github.com/urfave/cli/v2"
)

// permuteArgs moves every flag of args (a full argv) to the command it
// belongs to, GNU getopt style, before urfave/cli parses it: urfave stops
// at a command's first argument, so `dmsnap ls vg0 -o name` or `dmsnap ls
// --json` would otherwise leave flags behind as arguments or give them to
// the wrong command.
//
// It walks the command tree: a word naming a subcommand of the current
// command (before any argument) descends into it; any other word is an
// argument. A flag belongs to the nearest command, from the current one
// outwards to the global flags, that defines it; one nobody defines stays
// with the current command, whose parser reports it. Forms: --name,
// --name=v, --name v, -name (Go's single-dash long form), -f v, -fv, -f=v
// and clusters of short bool flags (-Pq); bool flags take no separate
// value. "--" ends the flags: everything after it is an argument. The
// result is argv[0], then each command's flags after its name, then "--"
// if one was given (an argument after it may start with '-'), then the
// arguments.
func permuteArgs(app *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	type level struct {
		word  string          // the command's name as written; "" for the app
		flags map[string]bool // flag name -> takes a value
		subs  []*cli.Command
		out   []string
	}
	levels := []*level{{flags: flagTable(app.Flags), subs: app.Commands}}
	// lookup returns the level defining name, nearest first.
	lookup := func(name string) (*level, bool) {
		for i := len(levels) - 1; i >= 0; i-- {
			if takes, ok := levels[i].flags[name]; ok {
				return levels[i], takes
			}
		}
		return nil, false
	}
	var pos []string
	dashdash := false
	// missing is the level of a value flag that ends args without its
	// value. It must end the result too, or it would take an argument
	// (or "--") as its value: its parser then reports the missing value.
	var missing *level
	rest := args[1:]
	for i := 0; i < len(rest); i++ {
		a := rest[i]
		cur := levels[len(levels)-1]
		if a == "--" {
			pos = append(pos, rest[i+1:]...)
			dashdash = true
			break
		}
		if len(a) < 2 || a[0] != '-' {
			if len(pos) == 0 {
				if c := findCommand(cur.subs, a); c != nil {
					levels = append(levels, &level{word: a, flags: flagTable(c.Flags), subs: c.Subcommands})
					continue
				}
			}
			pos = append(pos, a)
			continue
		}
		// next consumes the following word as a flag's value.
		next := func() (string, bool) {
			if i+1 < len(rest) {
				i++
				return rest[i], true
			}
			return "", false
		}
		long := strings.HasPrefix(a, "--")
		body := strings.TrimLeft(a, "-")
		name, _, hasValue := strings.Cut(body, "=")
		if lv, takes := lookup(name); lv != nil {
			lv.out = append(lv.out, a)
			if takes && !hasValue {
				if v, ok := next(); ok {
					lv.out = append(lv.out, v)
				} else {
					missing = lv
				}
			}
			continue
		}
		if long || len(body) < 2 {
			cur.out = append(cur.out, a) // unknown: its command reports it
			continue
		}
		// A cluster of short flags: bools, then at most one that takes
		// the rest of the word, or the next word, as its value.
		type placed struct {
			lv   *level
			toks []string
		}
		var cluster []placed
		ok := true
		for j := 0; j < len(body); j++ {
			lv, takes := lookup(body[j : j+1])
			if lv == nil {
				ok = false
				break
			}
			f := "-" + body[j:j+1]
			if !takes {
				cluster = append(cluster, placed{lv, []string{f}})
				continue
			}
			if v := strings.TrimPrefix(body[j+1:], "="); v != "" {
				cluster = append(cluster, placed{lv, []string{f, v}})
			} else if v, has := next(); has {
				cluster = append(cluster, placed{lv, []string{f, v}})
			} else {
				cluster = append(cluster, placed{lv, []string{f}})
				missing = lv
			}
			break
		}
		if !ok {
			cur.out = append(cur.out, a)
			continue
		}
		for _, p := range cluster {
			p.lv.out = append(p.lv.out, p.toks...)
		}
	}
	out := []string{args[0]}
	for _, lv := range levels {
		if lv.word != "" {
			out = append(out, lv.word)
		}
		out = append(out, lv.out...)
		if lv == missing {
			return out
		}
	}
	if dashdash {
		out = append(out, "--")
	}
	return append(out, pos...)
}

// flagTable maps each name of flags, and of the help flag every command
// gets, to whether it takes a value.
func flagTable(flags []cli.Flag) map[string]bool {
	m := map[string]bool{}
	for _, f := range append(flags, cli.HelpFlag) {
		takes := true
		if tv, ok := f.(interface{ TakesValue() bool }); ok {
			takes = tv.TakesValue()
		}
		for _, n := range f.Names() {
			m[n] = takes
		}
	}
	return m
}

func findCommand(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}
