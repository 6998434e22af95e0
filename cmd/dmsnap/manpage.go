package main

import (
	"fmt"
	"sort"
	"strings"

	"github.com/urfave/cli/v2"
)

// manPages renders dmsnap(8) and one page per command and subcommand
// (dmsnap-pool-create(8), …) from the CLI definitions, keyed by file name.
// docs/man/ holds their output; TestManPagesCurrent fails when it is stale.
func manPages(app *cli.App) map[string]string {
	pages := map[string]string{}
	var names []string
	var walk func(path []string, cmds []*cli.Command)
	walk = func(path []string, cmds []*cli.Command) {
		for _, c := range cmds {
			if c.Hidden || c.Name == "help" {
				continue
			}
			p := append(append([]string(nil), path...), c.Name)
			names = append(names, strings.Join(p, "-"))
			walk(p, c.Subcommands)
		}
	}
	walk([]string{"dmsnap"}, app.Commands)
	sort.Strings(names)
	pages["dmsnap.8"] = manPage("dmsnap", app.Usage, "dmsnap [global options] command [options] [arguments]", app.Description, app.Flags, app.Commands, names)
	var render func(path []string, cmds []*cli.Command)
	render = func(path []string, cmds []*cli.Command) {
		for _, c := range cmds {
			if c.Hidden || c.Name == "help" {
				continue
			}
			p := append(append([]string(nil), path...), c.Name)
			synopsis := strings.Join(p, " ") + " [options]"
			if c.ArgsUsage != "" {
				synopsis += " " + c.ArgsUsage
			} else if len(c.Subcommands) > 0 {
				synopsis += " command"
			}
			pages[strings.Join(p, "-")+".8"] = manPage(strings.Join(p, "-"), c.Usage, synopsis, c.Description, c.Flags, c.Subcommands, []string{"dmsnap"})
			render(p, c.Subcommands)
		}
	}
	render([]string{"dmsnap"}, app.Commands)
	return pages
}

// roff escapes text for a man page body line.
func roff(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	s = strings.ReplaceAll(s, "-", `\-`)
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, ".") || strings.HasPrefix(l, "'") {
			l = `\&` + l
		}
		b.WriteString(l + "\n")
	}
	return b.String()
}

func manPage(name, usage, synopsis, desc string, flags []cli.Flag, subs []*cli.Command, seeAlso []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, ".TH %s 8 \"\" \"dmsnap\" \"System Administration\"\n", strings.ToUpper(name))
	fmt.Fprintf(&b, ".SH NAME\n%s \\- %s", roff(name)[:len(roff(name))-1], roff(usage))
	fmt.Fprintf(&b, ".SH SYNOPSIS\n.B %s", roff(synopsis))
	// EXIT STATUS is a section of its own, not part of the description.
	desc, _, _ = strings.Cut(desc, exitStatusHelp)
	desc = strings.TrimSpace(desc)
	if desc == "" {
		desc = usage
	}
	fmt.Fprintf(&b, ".SH DESCRIPTION\n.nf\n%s.fi\n", roff(desc))
	if len(subs) > 0 {
		b.WriteString(".SH COMMANDS\n")
		for _, c := range subs {
			if c.Hidden || c.Name == "help" {
				continue
			}
			fmt.Fprintf(&b, ".TP\n.B %s%s", roff(c.Name), roff(c.Usage))
		}
	}
	var visible []cli.Flag
	for _, f := range flags {
		if vf, ok := f.(cli.VisibleFlag); ok && !vf.IsVisible() {
			continue
		}
		visible = append(visible, f)
	}
	if len(visible) > 0 {
		b.WriteString(".SH OPTIONS\n")
		for _, f := range visible {
			var forms []string
			for _, n := range f.Names() {
				if len(n) == 1 {
					forms = append(forms, "-"+n)
				} else {
					forms = append(forms, "--"+n)
				}
			}
			usage := ""
			if df, ok := f.(cli.DocGenerationFlag); ok {
				usage = df.GetUsage()
				if df.TakesValue() {
					forms[0] += " value"
				}
			}
			fmt.Fprintf(&b, ".TP\n.B %s%s", roff(strings.Join(forms, ", ")), roff(usage))
		}
	}
	b.WriteString(".SH EXIT STATUS\n.nf\n" + roff(strings.TrimPrefix(exitStatusHelp, "EXIT STATUS\n")) + ".fi\n")
	b.WriteString(".SH SEE ALSO\n")
	for i, s := range seeAlso {
		sep := ",\n"
		if i == len(seeAlso)-1 {
			sep = "\n"
		}
		fmt.Fprintf(&b, ".BR %s (8)%s", roff(s)[:len(roff(s))-1], sep)
	}
	return b.String()
}
