package report

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// selector decides whether a row is shown.
type selector func(row []any) bool

// parseSelect compiles -S: comparisons `column OP value` (OP one of = != <
// <= > >= =~ !~; values may be quoted) joined by && and ||, && binding
// tighter, with parentheses and a leading ! for negation. Sizes take units
// (a bare number is MiB, as LVM2 reads them), =~ takes a Go regexp.
func parseSelect(s string, r *Report) (selector, error) {
	toks, err := tokenize(s)
	if err != nil {
		return nil, err
	}
	p := &selParser{toks: toks, r: r}
	sel, err := p.or()
	if err != nil {
		return nil, err
	}
	if p.pos < len(p.toks) {
		return nil, fmt.Errorf("unexpected %q", p.toks[p.pos].text)
	}
	return sel, nil
}

type token struct {
	text   string
	quoted bool
}

var operators = []string{"&&", "||", "=~", "!~", "!=", "<=", ">=", "=", "<", ">", "(", ")", "!"}

func tokenize(s string) ([]token, error) {
	var toks []token
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			i++
			continue
		case c == '\'' || c == '"':
			j := strings.IndexByte(s[i+1:], c)
			if j < 0 {
				return nil, fmt.Errorf("unterminated quote at %d", i)
			}
			toks = append(toks, token{text: s[i+1 : i+1+j], quoted: true})
			i += j + 2
			continue
		}
		matched := false
		for _, op := range operators {
			if strings.HasPrefix(s[i:], op) {
				toks = append(toks, token{text: op})
				i += len(op)
				matched = true
				break
			}
		}
		if matched {
			continue
		}
		j := i
		for j < len(s) && !strings.ContainsRune(" \t'\"&|=!<>()~", rune(s[j])) {
			j++
		}
		if j == i {
			return nil, fmt.Errorf("unexpected %q at %d", s[i], i)
		}
		toks = append(toks, token{text: s[i:j]})
		i = j
	}
	if len(toks) == 0 {
		return nil, fmt.Errorf("empty selection")
	}
	return toks, nil
}

type selParser struct {
	toks []token
	pos  int
	r    *Report
}

func (p *selParser) peek(op string) bool {
	return p.pos < len(p.toks) && !p.toks[p.pos].quoted && p.toks[p.pos].text == op
}

func (p *selParser) or() (selector, error) {
	left, err := p.and()
	if err != nil {
		return nil, err
	}
	for p.peek("||") {
		p.pos++
		right, err := p.and()
		if err != nil {
			return nil, err
		}
		l := left
		left = func(row []any) bool { return l(row) || right(row) }
	}
	return left, nil
}

func (p *selParser) and() (selector, error) {
	left, err := p.unary()
	if err != nil {
		return nil, err
	}
	for p.peek("&&") {
		p.pos++
		right, err := p.unary()
		if err != nil {
			return nil, err
		}
		l := left
		left = func(row []any) bool { return l(row) && right(row) }
	}
	return left, nil
}

func (p *selParser) unary() (selector, error) {
	switch {
	case p.peek("!"):
		p.pos++
		inner, err := p.unary()
		if err != nil {
			return nil, err
		}
		return func(row []any) bool { return !inner(row) }, nil
	case p.peek("("):
		p.pos++
		inner, err := p.or()
		if err != nil {
			return nil, err
		}
		if !p.peek(")") {
			return nil, fmt.Errorf("missing )")
		}
		p.pos++
		return inner, nil
	}
	return p.comparison()
}

func (p *selParser) comparison() (selector, error) {
	if p.pos+3 > len(p.toks) {
		return nil, fmt.Errorf("incomplete comparison (want COLUMN OP VALUE)")
	}
	name, op, val := p.toks[p.pos], p.toks[p.pos+1], p.toks[p.pos+2]
	p.pos += 3
	if !val.quoted && isOperator(val.text) {
		return nil, fmt.Errorf("%s %s: missing value before %q", name.text, op.text, val.text)
	}
	if name.quoted {
		return nil, fmt.Errorf("a column name cannot be quoted: %q", name.text)
	}
	col, err := p.r.index(name.text)
	if err != nil {
		return nil, err
	}
	kind := p.r.cols[col].Kind
	switch op.text {
	case "=~", "!~":
		re, err := regexp.Compile(val.text)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name.text, err)
		}
		want := op.text == "=~"
		return func(row []any) bool {
			return row[col] != nil && re.MatchString(fmt.Sprint(row[col])) == want
		}, nil
	case "=", "!=", "<", "<=", ">", ">=":
	default:
		return nil, fmt.Errorf("%s: unknown operator %q (want = != < <= > >= =~ !~)", name.text, op.text)
	}
	var ref any
	switch kind {
	case Text:
		ref = val.text
	case Size:
		n, err := ParseSize(val.text)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name.text, err)
		}
		ref = n
	default:
		f, err := strconv.ParseFloat(strings.TrimSuffix(val.text, "%"), 64)
		if err != nil {
			return nil, fmt.Errorf("%s: %q is not a number", name.text, val.text)
		}
		ref = f
	}
	test := map[string]func(int) bool{
		"=": func(c int) bool { return c == 0 }, "!=": func(c int) bool { return c != 0 },
		"<": func(c int) bool { return c < 0 }, "<=": func(c int) bool { return c <= 0 },
		">": func(c int) bool { return c > 0 }, ">=": func(c int) bool { return c >= 0 },
	}[op.text]
	return func(row []any) bool {
		if row[col] == nil {
			return false
		}
		v := row[col]
		if kind == Text {
			v = fmt.Sprint(v)
		}
		return test(compare(v, ref))
	}, nil
}

func isOperator(s string) bool {
	for _, op := range operators {
		if s == op {
			return true
		}
	}
	return false
}
