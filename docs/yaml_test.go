package docs_test

import (
	"fmt"
	"strings"
)

// yamlNode is a node of the small YAML subset docs/openapi.yaml is written
// in: block mappings, block scalars (| and >), one-line scalars, and block
// lists. The module has no YAML library and the tests need only the
// structure of the document (paths, methods, status codes), so lists are
// kept as the first line of each item and block scalars are skipped.
type yamlNode struct {
	line   int
	scalar string
	keys   []string // mapping keys, in order
	child  map[string]*yamlNode
	items  []string // list items: the text after "- " on the item's first line
}

// get returns the child at the path of keys, or nil.
func (n *yamlNode) get(path ...string) *yamlNode {
	for _, k := range path {
		if n == nil || n.child == nil {
			return nil
		}
		n = n.child[k]
	}
	return n
}

type yamlLine struct {
	num    int
	indent int
	text   string
}

// parseYAMLSubset parses the subset described at yamlNode. It fails on
// tabs in indentation, duplicate keys, and lines it cannot place.
func parseYAMLSubset(src string) (*yamlNode, error) {
	var lines []yamlLine
	for i, raw := range strings.Split(src, "\n") {
		trimmed := strings.TrimLeft(raw, " ")
		if strings.HasPrefix(trimmed, "\t") {
			return nil, fmt.Errorf("line %d: tab in indentation", i+1)
		}
		lines = append(lines, yamlLine{num: i + 1, indent: len(raw) - len(trimmed), text: strings.TrimRight(trimmed, " \r")})
	}
	blank := func(l yamlLine) bool { return l.text == "" || strings.HasPrefix(l.text, "#") }

	root := &yamlNode{child: map[string]*yamlNode{}}
	type frame struct {
		indent int
		node   *yamlNode
	}
	stack := []frame{{indent: -1, node: root}}
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if blank(l) {
			continue
		}
		for stack[len(stack)-1].indent >= l.indent {
			stack = stack[:len(stack)-1]
		}
		parent := stack[len(stack)-1].node
		// skipDeeper skips the lines (blank or more indented than l) that belong to l.
		skipDeeper := func() {
			for i+1 < len(lines) && (lines[i+1].text == "" || lines[i+1].indent > l.indent) {
				i++
			}
		}
		if l.text == "-" || strings.HasPrefix(l.text, "- ") {
			if len(parent.keys) > 0 {
				return nil, fmt.Errorf("line %d: list item in a mapping", l.num)
			}
			parent.items = append(parent.items, strings.TrimSpace(strings.TrimPrefix(l.text, "-")))
			skipDeeper()
			continue
		}
		key, value, err := splitYAMLKey(l.text)
		if err != nil {
			return nil, fmt.Errorf("line %d: %v", l.num, err)
		}
		if len(parent.items) > 0 || parent.scalar != "" {
			return nil, fmt.Errorf("line %d: key %q beside a list or scalar", l.num, key)
		}
		if parent.child == nil {
			parent.child = map[string]*yamlNode{}
		}
		if _, dup := parent.child[key]; dup {
			return nil, fmt.Errorf("line %d: duplicate key %q", l.num, key)
		}
		n := &yamlNode{line: l.num}
		parent.child[key] = n
		parent.keys = append(parent.keys, key)
		switch {
		case value == "":
			stack = append(stack, frame{indent: l.indent, node: n})
		case strings.HasPrefix(value, "|") || strings.HasPrefix(value, ">"):
			n.scalar = value
			skipDeeper()
		default:
			n.scalar = unquoteYAML(value)
		}
	}
	return root, nil
}

// splitYAMLKey splits "key: value" (or "key:") into its parts.
func splitYAMLKey(text string) (key, value string, err error) {
	var rest string
	if text[0] == '\'' || text[0] == '"' {
		end := strings.IndexByte(text[1:], text[0])
		if end < 0 {
			return "", "", fmt.Errorf("unterminated quoted key in %q", text)
		}
		key, rest = text[1:end+1], text[end+2:]
	} else {
		i := strings.Index(text, ": ")
		if i < 0 {
			if !strings.HasSuffix(text, ":") {
				return "", "", fmt.Errorf("want \"key: value\" or \"key:\", got %q", text)
			}
			i = len(text) - 1
		}
		key, rest = text[:i], text[i:]
	}
	if !strings.HasPrefix(rest, ":") {
		return "", "", fmt.Errorf("want ':' after key %q", key)
	}
	value = strings.TrimSpace(rest[1:])
	if strings.HasPrefix(value, "#") {
		value = ""
	}
	return key, value, nil
}

func unquoteYAML(v string) string {
	if len(v) >= 2 && (v[0] == '\'' || v[0] == '"') && v[len(v)-1] == v[0] {
		return v[1 : len(v)-1]
	}
	return v
}
