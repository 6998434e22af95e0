package main

import (
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/dmsnap/dmsnap/internal/report"
)

// reportFlags are the lvs(8)-style flags every list command takes.
func reportFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "options", Aliases: []string{"o"}, Usage: "columns: `COLS` replaces the defaults, +COLS adds to them (comma-separated)"},
		&cli.StringFlag{Name: "sort", Aliases: []string{"O"}, Usage: "sort by `COLS`; -COL sorts descending"},
		&cli.StringFlag{Name: "select", Aliases: []string{"S"}, Usage: "show only rows matching `EXPR`, e.g. 'size>1g && name=~^db' (= != < <= > >= =~ !~, && ||, !, parentheses)"},
		&cli.BoolFlag{Name: "noheadings", Usage: "omit the heading line"},
		&cli.StringFlag{Name: "separator", Usage: "split columns by `SEP` instead of aligning them"},
		&cli.StringFlag{Name: "units", Usage: "size `UNIT`: h (default), b, s, k, m, g, t, p, e; upper case for powers of 1000"},
		&cli.BoolFlag{Name: "nosuffix", Usage: "print sizes without their unit letter"},
	}
}

// reportOptions reads reportFlags.
func reportOptions(c *cli.Context) report.Options {
	return report.Options{
		Fields: c.String("options"), Sort: c.String("sort"), Select: c.String("select"),
		NoHeadings: c.Bool("noheadings"), Separator: c.String("separator"),
		Units: c.String("units"), NoSuffix: c.Bool("nosuffix"),
	}
}

// writeReport prints r as a table, or as JSON in its versioned envelope. A
// bad report flag is a usage error, found before anything is printed.
func writeReport(gopts *globalOptions, r *report.Report, o report.Options, format string) error {
	if err := r.Check(o); err != nil {
		return usageError{err}
	}
	if gopts.JSON {
		return r.WriteJSON(gopts.stdout, o, report.Version{Format: format, Major: 1, Minor: 0})
	}
	return r.Write(gopts.stdout, o)
}

// columnNames lists cols for a command's description.
func columnNames(cols []report.Column) string {
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = c.Name
	}
	return strings.Join(names, ", ")
}
