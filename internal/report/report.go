package report

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Kind is how a column's values compare, print and encode.
type Kind int

const (
	Text    Kind = iota // string
	Size                // uint64 bytes; printed per --units, JSON in bytes
	Count               // int64 or uint64
	Percent             // float64, printed with two decimals
)

// Column describes one field of a list.
type Column struct {
	Name    string // what -o, -O and -S call it; the JSON key
	Header  string // the heading printed above it
	Kind    Kind
	Default bool // shown when -o does not replace the set
	Right   bool // right-aligned (sizes and numbers are, always)
}

// Options are the report flags of every list command.
type Options struct {
	Fields     string // -o: "a,b" replaces the default columns, "+a,b" appends
	Sort       string // -O: "a,-b" (a minus sorts descending)
	Select     string // -S: "name=~^db && size>1g || attr=s"
	NoHeadings bool
	Separator  string // "" aligns columns with two spaces between them
	Units      string // --units; "" is "h"
	NoSuffix   bool
}

// A Report holds the rows of one list until it is written.
type Report struct {
	cols []Column
	rows [][]any
	objs []any // per row, what JSON encodes when rows carry objects
}

// New starts a report with cols, the list's whole column set.
func New(cols ...Column) *Report { return &Report{cols: cols} }

// Add appends a row: one value per column, in order, of the column's Kind
// (nil for "not applicable": printed empty, JSON null).
func (r *Report) Add(vals ...any) {
	if len(vals) != len(r.cols) {
		panic(fmt.Sprintf("report: row of %d values for %d columns", len(vals), len(r.cols)))
	}
	r.rows = append(r.rows, vals)
	r.objs = append(r.objs, nil)
}

// AddObject appends a row that JSON encodes as obj (a list's full record,
// which may hold more than its columns, nested targets say) while -S and -O
// still act on vals.
func (r *Report) AddObject(obj any, vals ...any) {
	r.Add(vals...)
	r.objs[len(r.objs)-1] = obj
}

// Len is the number of rows added.
func (r *Report) Len() int { return len(r.rows) }

// plan is what Options resolved to against a column set.
type plan struct {
	show []int     // columns printed, in order
	keys []sortKey // sort order
	sel  selector  // nil: every row
}

type sortKey struct {
	col  int
	desc bool
}

func (r *Report) index(name string) (int, error) {
	for i, c := range r.cols {
		if c.Name == name {
			return i, nil
		}
	}
	names := make([]string, len(r.cols))
	for i, c := range r.cols {
		names[i] = c.Name
	}
	return 0, fmt.Errorf("unknown column %q; columns: %s", name, strings.Join(names, ", "))
}

// Check validates o against the report's columns without printing, so a
// command can refuse bad flags before it does any work.
func (r *Report) Check(o Options) error {
	_, err := r.plan(o)
	return err
}

func (r *Report) plan(o Options) (plan, error) {
	var p plan
	if err := ValidUnits(o.Units); err != nil {
		return p, err
	}
	fields := strings.TrimSpace(o.Fields)
	if fields == "" || strings.HasPrefix(fields, "+") {
		for i, c := range r.cols {
			if c.Default {
				p.show = append(p.show, i)
			}
		}
		fields = strings.TrimPrefix(fields, "+")
	}
	if fields != "" {
		for _, f := range strings.Split(fields, ",") {
			i, err := r.index(strings.TrimSpace(f))
			if err != nil {
				return p, fmt.Errorf("-o: %w", err)
			}
			if !slices.Contains(p.show, i) {
				p.show = append(p.show, i)
			}
		}
	}
	if s := strings.TrimSpace(o.Sort); s != "" {
		for _, f := range strings.Split(s, ",") {
			f = strings.TrimSpace(f)
			k := sortKey{desc: strings.HasPrefix(f, "-")}
			i, err := r.index(strings.TrimLeft(f, "+-"))
			if err != nil {
				return p, fmt.Errorf("-O: %w", err)
			}
			k.col = i
			p.keys = append(p.keys, k)
		}
	}
	if s := strings.TrimSpace(o.Select); s != "" {
		sel, err := parseSelect(s, r)
		if err != nil {
			return p, fmt.Errorf("-S %q: %w", o.Select, err)
		}
		p.sel = sel
	}
	return p, nil
}

// apply returns the indices of the rows shown, in order.
func (p plan) apply(rows [][]any) []int {
	var out []int
	for i, row := range rows {
		if p.sel == nil || p.sel(row) {
			out = append(out, i)
		}
	}
	if len(p.keys) > 0 {
		slices.SortStableFunc(out, func(ia, ib int) int {
			a, b := rows[ia], rows[ib]
			for _, k := range p.keys {
				c := compare(a[k.col], b[k.col])
				if k.desc {
					c = -c
				}
				if c != 0 {
					return c
				}
			}
			return 0
		})
	}
	return out
}

// Write prints the rows as a table: a heading line (unless NoHeadings), then
// one line per selected row, columns aligned or split by Separator.
func (r *Report) Write(w io.Writer, o Options) error {
	p, err := r.plan(o)
	if err != nil {
		return err
	}
	var lines [][]string
	if !o.NoHeadings {
		h := make([]string, len(p.show))
		for j, i := range p.show {
			h[j] = r.cols[i].Header
		}
		lines = append(lines, h)
	}
	for _, ri := range p.apply(r.rows) {
		row := r.rows[ri]
		l := make([]string, len(p.show))
		for j, i := range p.show {
			l[j] = r.format(i, row[i], o)
		}
		lines = append(lines, l)
	}
	if o.Separator != "" {
		for _, l := range lines {
			if _, err := fmt.Fprintln(w, strings.Join(l, o.Separator)); err != nil {
				return err
			}
		}
		return nil
	}
	width := make([]int, len(p.show))
	for _, l := range lines {
		for j, s := range l {
			width[j] = max(width[j], utf8.RuneCountInString(s))
		}
	}
	var b strings.Builder
	for _, l := range lines {
		b.Reset()
		for j, s := range l {
			pad := strings.Repeat(" ", width[j]-utf8.RuneCountInString(s))
			right := r.cols[p.show[j]].Right || r.cols[p.show[j]].Kind != Text
			last := j == len(l)-1
			switch {
			case right:
				b.WriteString(pad + s)
			case last:
				b.WriteString(s)
			default:
				b.WriteString(s + pad)
			}
			if !last {
				b.WriteString("  ")
			}
		}
		if _, err := fmt.Fprintln(w, b.String()); err != nil {
			return err
		}
	}
	return nil
}

func (r *Report) format(i int, v any, o Options) string {
	if v == nil {
		return ""
	}
	switch r.cols[i].Kind {
	case Size:
		return FormatSize(toUint(v), o.Units, o.NoSuffix)
	case Percent:
		return strconv.FormatFloat(toFloat(v), 'f', 2, 64)
	}
	return fmt.Sprint(v)
}

// Rows returns the selected, sorted rows of the shown columns as objects
// keyed by column name, sizes in bytes: what JSON output encodes.
func (r *Report) Rows(o Options) ([]map[string]any, error) {
	p, err := r.plan(o)
	if err != nil {
		return nil, err
	}
	out := []map[string]any{}
	for _, ri := range p.apply(r.rows) {
		row := r.rows[ri]
		m := make(map[string]any, len(p.show))
		for _, i := range p.show {
			m[r.cols[i].Name] = row[i]
		}
		out = append(out, m)
	}
	return out, nil
}

// Objects returns the objects of the selected rows (AddObject), sorted:
// what a list whose records hold more than its columns encodes as JSON.
func (r *Report) Objects(o Options) ([]any, error) {
	p, err := r.plan(o)
	if err != nil {
		return nil, err
	}
	out := []any{}
	for _, ri := range p.apply(r.rows) {
		out = append(out, r.objs[ri])
	}
	return out, nil
}

// Envelope is the versioned wrapper of every JSON list, in the spirit of
// `zfs list -j`'s output_version: a reader checks Format and Major before
// trusting the rest; Minor grows when fields are added.
type Envelope struct {
	OutputVersion Version `json:"output_version"`
	Report        any     `json:"report"` // a list of rows or records
}

// Version names a JSON output's format and its version.
type Version struct {
	Format string `json:"format"` // e.g. "dmsnap ls"
	Major  int    `json:"vers_major"`
	Minor  int    `json:"vers_minor"`
}

// WriteJSON encodes the selected rows in an Envelope: the rows' objects
// when they were added with AddObject, else the shown columns by name.
func (r *Report) WriteJSON(w io.Writer, o Options, v Version) error {
	var rows any
	var err error
	if len(r.objs) > 0 && r.objs[0] != nil {
		rows, err = r.Objects(o)
	} else {
		rows, err = r.Rows(o)
	}
	if err != nil {
		return err
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(Envelope{OutputVersion: v, Report: rows})
}

func toUint(v any) uint64 {
	switch n := v.(type) {
	case uint64:
		return n
	case int64:
		return uint64(max(n, 0))
	case int:
		return uint64(max(n, 0))
	case uint32:
		return uint64(n)
	}
	return 0
}

// exactUint is v as an unsigned integer when it is one, so sizes compare
// exactly beyond float64's 53 bits.
func exactUint(v any) (uint64, bool) {
	switch n := v.(type) {
	case uint64:
		return n, true
	case uint32:
		return uint64(n), true
	case int64:
		return uint64(n), n >= 0
	case int:
		return uint64(n), n >= 0
	}
	return 0, false
}

func toFloat(v any) float64 {
	switch n := v.(type) {
	case float64:
		return n
	case uint64:
		return float64(n)
	case int64:
		return float64(n)
	case int:
		return float64(n)
	}
	return 0
}

// compare orders two values of one column: nil first, numbers by value,
// text by bytes.
func compare(a, b any) int {
	switch {
	case a == nil && b == nil:
		return 0
	case a == nil:
		return -1
	case b == nil:
		return 1
	}
	if s, ok := a.(string); ok {
		return strings.Compare(s, fmt.Sprint(b))
	}
	if ua, ok := exactUint(a); ok {
		if ub, ok := exactUint(b); ok {
			return cmp.Compare(ua, ub)
		}
	}
	return cmp.Compare(toFloat(a), toFloat(b))
}
