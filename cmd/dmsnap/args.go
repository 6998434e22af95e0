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
// outwards to the global flags, that defines it. One given before the
// name of the command defining it (`dmsnap lv --size 1G create vg/x`) is
// recognised by the subcommands that define it and goes to the command
// finally named. One nobody defines stays with the current command, whose
// parser reports it. Forms: --name, --name=v, --name v, -name (Go's
// single-dash long form), -f v, -fv, -f=v and clusters of short bool flags
// (-Pq); bool flags take no separate value. "--" ends the flags:
// everything after it is an argument. The result is argv[0], then each
// command's flags after its name, then "--" if one was given (an argument
// after it may start with '-'), then the arguments.
func permuteArgs(app *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	type level struct {
		word  string          // the command's name as written; "" for the app
		flags map[string]bool // flag name -> takes a value
		subs  []*cli.Command
	}
	// A flag as given, and where it goes: lv, or when nil the deepest
	// level from seen on that defines name (seen itself if none does).
	type flagWords struct {
		lv, seen *level
		name     string
		words    []string
	}
	levels := []*level{{flags: flagTable(app.Flags), subs: app.Commands}}
	var flags []*flagWords
	// lookup finds the level defining name, nearest first; or, failing
	// that, whether subcommands below the current level define it, which
	// only the command finally named can settle.
	lookup := func(name string) (lv *level, takes, below bool) {
		for i := len(levels) - 1; i >= 0; i-- {
			if takes, ok := levels[i].flags[name]; ok {
				return levels[i], takes, false
			}
		}
		takes, below = flagBelow(levels[len(levels)-1].subs, name)
		return nil, takes, below
	}
	var pos []string
	dashdash := false
	// missing is a value flag that ends args without its value. It must
	// end the result too, or it would take an argument (or "--") as its
	// value: its parser then reports the missing value.
	var missing *flagWords
	// help is set by -h or --help. urfave/cli would take an argument
	// given with it for a help topic (`lv create vg/x -h`: "No help topic
	// for 'vg/x'"), so the arguments are dropped: the help is the
	// command's.
	help := false
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
		// add records flag words; takes says a value is still to come,
		// the next word.
		add := func(lv *level, name string, takes bool, words ...string) {
			f := &flagWords{lv: lv, seen: cur, name: name, words: words}
			flags = append(flags, f)
			if (name == "help" || name == "h") && !strings.Contains(words[0], "=") {
				help = true
			}
			if takes {
				if i+1 < len(rest) {
					i++
					f.words = append(f.words, rest[i])
				} else {
					missing = f
				}
			}
		}
		long := strings.HasPrefix(a, "--")
		body := strings.TrimLeft(a, "-")
		name, _, hasValue := strings.Cut(body, "=")
		if lv, takes, below := lookup(name); lv != nil || below {
			add(lv, name, takes && !hasValue, a)
			continue
		}
		if long || len(body) < 2 {
			add(cur, name, false, a) // unknown: its command reports it
			continue
		}
		// A cluster of short flags: bools, then at most one that takes
		// the rest of the word, or the next word, as its value. A
		// letter nobody defines leaves the word whole, to be reported.
		type short struct {
			lv    *level
			name  string
			takes bool
		}
		var cluster []short
		for j := 0; j < len(body); j++ {
			lv, takes, below := lookup(body[j : j+1])
			if lv == nil && !below {
				cluster = nil
				break
			}
			cluster = append(cluster, short{lv, body[j : j+1], takes})
			if takes {
				break
			}
		}
		if cluster == nil {
			add(cur, name, false, a)
			continue
		}
		for _, f := range cluster {
			if !f.takes {
				add(f.lv, f.name, false, "-"+f.name)
			} else if v := strings.TrimPrefix(body[len(cluster):], "="); v != "" {
				add(f.lv, f.name, false, "-"+f.name, v)
			} else {
				add(f.lv, f.name, true, "-"+f.name)
			}
		}
	}
	out := map[*level][]string{}
	for _, f := range flags {
		if f.lv == nil {
			f.lv = f.seen
			for i := len(levels) - 1; levels[i] != f.seen; i-- {
				if _, ok := levels[i].flags[f.name]; ok {
					f.lv = levels[i]
					break
				}
			}
		}
		out[f.lv] = append(out[f.lv], f.words...)
	}
	argv := []string{args[0]}
	for _, lv := range levels {
		if lv.word != "" {
			argv = append(argv, lv.word)
		}
		argv = append(argv, out[lv]...)
		if missing != nil && lv == missing.lv {
			return argv
		}
	}
	if help {
		return argv
	}
	if dashdash {
		argv = append(argv, "--")
	}
	return append(argv, pos...)
}

// flagTable maps each name of flags, and of the help flag every command
// gets, to whether it takes a value.
func flagTable(flags []cli.Flag) map[string]bool {
	m := map[string]bool{}
	for _, f := range append(flags[:len(flags):len(flags)], cli.HelpFlag) {
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

// flagBelow reports whether some command in cmds or below defines the
// flag name, and whether it takes a value there. A name that takes a
// value in one command and not in another is no answer: below is false.
func flagBelow(cmds []*cli.Command, name string) (takes, below bool) {
	seen := map[bool]bool{}
	var walk func([]*cli.Command)
	walk = func(cmds []*cli.Command) {
		for _, c := range cmds {
			if t, ok := flagTable(c.Flags)[name]; ok {
				seen[t] = true
			}
			walk(c.Subcommands)
		}
	}
	walk(cmds)
	if len(seen) != 1 {
		return false, false
	}
	return seen[true], true
}

func findCommand(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}
