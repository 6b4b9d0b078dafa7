package sqlstore

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
)

// Args holds the values of the :name parameters of one statement.
//
// A value of type []string expands to a comma-separated list of
// placeholders, one per element (for IN lists). A value of type Rows
// expands to one parenthesised group of placeholders per row (for
// multi-row VALUES). Any other value is one placeholder.
type Args map[string]any

// Rows is a parameter value that expands to "(…), (…)", one group per row.
type Rows [][]any

// statement is SQL text with :name parameters, split once into literal
// text and parameter names.
type statement struct {
	parts []part
}

type part struct {
	text  string // literal SQL, when param is empty
	param string
}

// parseStatement splits text at its :name parameters. A colon that starts
// "::" (a PostgreSQL cast) or sits inside a quoted string, a quoted
// identifier or a -- comment is left alone.
func parseStatement(text string) *statement {
	st := &statement{}
	lit := 0
	flush := func(end int) {
		if end > lit {
			st.parts = append(st.parts, part{text: text[lit:end]})
		}
	}
	for i := 0; i < len(text); i++ {
		switch c := text[i]; {
		case c == '\'' || c == '"' || c == '`':
			// Skip to the closing quote; a doubled quote stays inside.
			for i++; i < len(text); i++ {
				if text[i] == c {
					if i+1 < len(text) && text[i+1] == c {
						i++
						continue
					}
					break
				}
			}
		case c == '-' && i+1 < len(text) && text[i+1] == '-':
			for i < len(text) && text[i] != '\n' {
				i++
			}
		case c == ':' && i+1 < len(text) && text[i+1] == ':':
			i++
		case c == ':' && i+1 < len(text) && isNameStart(text[i+1]):
			j := i + 1
			for j < len(text) && isNameByte(text[j]) {
				j++
			}
			flush(i)
			st.parts = append(st.parts, part{param: text[i+1 : j]})
			lit = j
			i = j - 1
		}
	}
	flush(len(text))
	return st
}

func isNameStart(c byte) bool {
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

func isNameByte(c byte) bool {
	return isNameStart(c) || (c >= '0' && c <= '9')
}

// statementCache keeps parsed statements by their text.
type statementCache struct{ m sync.Map }

func (c *statementCache) get(text string) *statement {
	if st, ok := c.m.Load(text); ok {
		return st.(*statement)
	}
	st := parseStatement(text)
	c.m.Store(text, st)
	return st
}

// bind renders st for the dialect: each parameter becomes a placeholder
// ("?" or "$n") and its value is appended to the returned arguments. With
// numbered placeholders a scalar parameter used twice is bound once.
func (d *Dialect) bind(st *statement, args Args) (string, []any, error) {
	var b strings.Builder
	out := make([]any, 0, len(args))
	var bound map[string]int
	placeholder := func(v any) {
		out = append(out, v)
		if d.NumberedPlaceholders {
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(len(out)))
		} else {
			b.WriteByte('?')
		}
	}
	for _, p := range st.parts {
		if p.param == "" {
			b.WriteString(p.text)
			continue
		}
		v, ok := args[p.param]
		if !ok {
			return "", nil, fmt.Errorf("no value for parameter :%s", p.param)
		}
		switch v := v.(type) {
		case []string:
			if len(v) == 0 {
				return "", nil, fmt.Errorf("empty list for parameter :%s", p.param)
			}
			for i, s := range v {
				if i > 0 {
					b.WriteString(", ")
				}
				placeholder(s)
			}
		case Rows:
			if len(v) == 0 {
				return "", nil, fmt.Errorf("no rows for parameter :%s", p.param)
			}
			for i, row := range v {
				if i > 0 {
					b.WriteString(", ")
				}
				b.WriteByte('(')
				for j, col := range row {
					if j > 0 {
						b.WriteString(", ")
					}
					placeholder(col)
				}
				b.WriteByte(')')
			}
		default:
			if d.NumberedPlaceholders {
				if n, ok := bound[p.param]; ok {
					b.WriteByte('$')
					b.WriteString(strconv.Itoa(n))
					continue
				}
				if bound == nil {
					bound = map[string]int{}
				}
				placeholder(v)
				bound[p.param] = len(out)
				continue
			}
			placeholder(v)
		}
	}
	return b.String(), out, nil
}

// Render turns text with :name parameters into the dialect's SQL and its
// argument list, as the store would send it; for tests and tools that
// look at query plans.
func (d *Dialect) Render(text string, args Args) (string, []any, error) {
	return d.bind(parseStatement(text), args)
}
