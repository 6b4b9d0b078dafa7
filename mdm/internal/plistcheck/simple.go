package plistcheck

import (
	"bytes"
	"encoding/base64"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Kind is the type of a value ScanSimpleXML reports.
type Kind uint8

// The kinds of plist values.
const (
	String Kind = iota + 1
	Integer
	Real
	Boolean
	Date
	Data
	Dict
	Array
)

// ScanSimpleXML is a fast path for the XML property lists devices send:
// one pass over the bytes, no tokenizer, no allocation for values nobody
// asks for. It reports each entry of the root dict to fn (strings with
// their text, entities resolved; other kinds without text) and returns
// true when data is in the simple form it knows and fn never returned
// false. The text given to fn is only valid during the call.
//
// A true result promises what Check followed by groob/plist would say:
// Check(data, lim) returns nil, groob/plist.Unmarshal decodes data without
// error, and every root-dict string groob would decode is the text fn was
// given (the last one of a repeated key). A false result promises nothing;
// the caller then decodes data the general way, which gives the
// authoritative answer, including the error for bad input.
//
// The simple form is: an optional <?xml version="1.0" ...?> declaration
// and Apple's DOCTYPE, then <plist> or <plist version="1.0"> holding one
// dict; elements without attributes, names or spaces inside tags; only
// spaces, tabs and newlines between elements; text without carriage
// returns, CDATA, comments or character references beyond the five named
// entities; and values groob/plist can decode (integers, reals, dates and
// base64 data are checked as it checks them). Containers nest at most
// lim.MaxDepth deep and there are at most lim.MaxElements elements.
func ScanSimpleXML(data []byte, lim Limits, fn func(key []byte, kind Kind, text []byte) bool) bool {
	lim = lim.withDefaults()
	s := &simpleScanner{data: data, lim: lim}
	s.prolog()
	if !s.literal("<plist>") && !s.literal(`<plist version="1.0">`) {
		return false
	}
	s.skipSpace()
	if !s.literal("<dict>") || !s.count() {
		return false
	}
	if !s.dict(1, fn) {
		return false
	}
	s.skipSpace()
	if !s.literal("</plist>") {
		return false
	}
	s.skipSpace()
	return s.pos == len(s.data)
}

type simpleScanner struct {
	data     []byte
	pos      int
	lim      Limits
	elements int
	buf      []byte // text with entities resolved
}

var (
	xmlDecls = []string{
		`<?xml version="1.0" encoding="UTF-8"?>`,
		`<?xml version="1.0" encoding="utf-8"?>`,
		`<?xml version="1.0"?>`,
	}
	appleDoctype = `<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">`
)

// prolog skips the XML declaration (only at the very start, where XML
// allows it), the DOCTYPE and the spaces around them.
func (s *simpleScanner) prolog() {
	for _, d := range xmlDecls {
		if s.literal(d) {
			break
		}
	}
	s.skipSpace()
	if s.literal(appleDoctype) {
		s.skipSpace()
	}
}

func (s *simpleScanner) literal(lit string) bool {
	if len(s.data)-s.pos >= len(lit) && string(s.data[s.pos:s.pos+len(lit)]) == lit {
		s.pos += len(lit)
		return true
	}
	return false
}

func (s *simpleScanner) skipSpace() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n':
			s.pos++
		default:
			return
		}
	}
}

// tag reads a tag at the current position: an opening tag (<name> or the
// self-closing <name/>) or a closing one (</name>).
func (s *simpleScanner) tag() (name []byte, closing, empty, ok bool) {
	d := s.data
	p := s.pos
	if p >= len(d) || d[p] != '<' {
		return nil, false, false, false
	}
	p++
	if p < len(d) && d[p] == '/' {
		closing = true
		p++
	}
	start := p
	for p < len(d) && d[p] >= 'a' && d[p] <= 'z' {
		p++
	}
	name = d[start:p]
	if len(name) == 0 || p >= len(d) {
		return nil, false, false, false
	}
	if !closing && d[p] == '/' {
		empty = true
		p++
		if p >= len(d) {
			return nil, false, false, false
		}
	}
	if d[p] != '>' {
		return nil, false, false, false
	}
	s.pos = p + 1
	return name, closing, empty, true
}

// count counts an element against the limit.
func (s *simpleScanner) count() bool {
	s.elements++
	return s.elements <= s.lim.MaxElements
}

// text reads character data up to the next '<' and returns it with
// entities resolved; escaped reports that the text lives in s.buf, which
// the next call reuses. It refuses anything encoding/xml would treat
// specially or reject.
func (s *simpleScanner) text() (t []byte, escaped, ok bool) {
	d := s.data
	start := s.pos
	p := start
	s.buf = s.buf[:0]
	for p < len(d) {
		c := d[p]
		switch {
		case c == '<':
			s.pos = p
			if !escaped {
				return d[start:p], false, true
			}
			s.buf = append(s.buf, d[start:p]...)
			return s.buf, true, true
		case c == '&':
			s.buf = append(s.buf, d[start:p]...)
			end := bytes.IndexByte(d[p:min(len(d), p+6)], ';')
			if end < 0 {
				return nil, false, false
			}
			switch string(d[p+1 : p+end]) {
			case "lt":
				s.buf = append(s.buf, '<')
			case "gt":
				s.buf = append(s.buf, '>')
			case "amp":
				s.buf = append(s.buf, '&')
			case "quot":
				s.buf = append(s.buf, '"')
			case "apos":
				s.buf = append(s.buf, '\'')
			default:
				return nil, false, false
			}
			escaped = true
			p += end + 1
			start = p
		case c == ']':
			if bytes.HasPrefix(d[p:], []byte("]]>")) {
				return nil, false, false
			}
			p++
		case c >= 0x20 && c < 0x80, c == '\t', c == '\n':
			p++
		case c < 0x80:
			return nil, false, false // carriage return, other control characters
		default:
			r, size := utf8.DecodeRune(d[p:])
			if r == utf8.RuneError || !isXMLChar(r) {
				return nil, false, false
			}
			p += size
		}
	}
	return nil, false, false // no closing tag
}

// isXMLChar reports whether r is allowed in XML text (above U+007F).
func isXMLChar(r rune) bool {
	return r <= 0xD7FF || (r >= 0xE000 && r <= 0xFFFD) || (r >= 0x10000 && r <= 0x10FFFF)
}

// leaf reads the content and closing tag of the leaf element name, which
// was opened (and was not self-closing), and checks the value as
// groob/plist would decode it.
func (s *simpleScanner) leaf(name string) (Kind, []byte, bool) {
	t, _, ok := s.text()
	if !ok {
		return 0, nil, false
	}
	end, closing, _, ok := s.tag()
	if !ok || !closing || string(end) != name {
		return 0, nil, false
	}
	kind, ok := checkLeaf(name, t)
	return kind, t, ok
}

// checkLeaf checks leaf text the way groob/plist parses it.
func checkLeaf(name string, t []byte) (Kind, bool) {
	switch name {
	case "string", "key":
		return String, true
	case "integer":
		v := strings.TrimSpace(string(t))
		var err error
		if strings.HasPrefix(v, "-") {
			_, err = strconv.ParseInt(v, 10, 64)
		} else {
			_, err = strconv.ParseUint(v, 10, 64)
		}
		return Integer, err == nil
	case "real":
		if len(t) == 0 {
			return Real, true
		}
		_, err := strconv.ParseFloat(strings.TrimSpace(string(t)), 64)
		return Real, err == nil
	case "date":
		var tm time.Time
		return Date, tm.UnmarshalText(t) == nil
	case "data":
		return Data, len(t) == 0 || validBase64(t)
	case "true", "false":
		return Boolean, len(t) == 0
	}
	return 0, false
}

// validBase64 reports whether groob/plist decodes t as data: it strips
// tabs, newlines, spaces and carriage returns, then decodes standard
// base64.
func validBase64(t []byte) bool {
	var stack [512]byte
	clean := stack[:0]
	for _, c := range t {
		switch c {
		case '\t', '\n', ' ', '\r':
		default:
			clean = append(clean, c)
		}
	}
	var out [384]byte
	dst := out[:]
	if n := base64.StdEncoding.DecodedLen(len(clean)); n > len(dst) {
		dst = make([]byte, n)
	}
	_, err := base64.StdEncoding.Decode(dst, clean)
	return err == nil
}

// value reads one value whose opening tag (name, self-closing if empty)
// was just read, inside depth containers.
func (s *simpleScanner) value(name []byte, empty bool, depth int) (Kind, []byte, bool) {
	switch string(name) {
	case "dict":
		if empty {
			return Dict, nil, depth < s.lim.MaxDepth
		}
		return Dict, nil, s.dict(depth+1, nil)
	case "array":
		if empty {
			return Array, nil, depth < s.lim.MaxDepth
		}
		return Array, nil, s.array(depth + 1)
	case "string", "integer", "real", "date", "data", "true", "false":
		if empty {
			kind, ok := checkLeaf(string(name), nil)
			return kind, nil, ok
		}
		return s.leaf(string(name))
	}
	return 0, nil, false
}

// dict reads the entries of a dict whose opening tag was read (and
// counted), and its closing tag. For the root dict (fn not nil) it
// reports each entry.
func (s *simpleScanner) dict(depth int, fn func(key []byte, kind Kind, text []byte) bool) bool {
	if depth > s.lim.MaxDepth {
		return false
	}
	for {
		s.skipSpace()
		name, closing, empty, ok := s.tag()
		if !ok {
			return false
		}
		if closing {
			return string(name) == "dict"
		}
		if string(name) != "key" || !s.count() {
			return false
		}
		var key []byte
		if !empty {
			t, escaped, ok := s.text()
			if !ok {
				return false
			}
			// The value's text reuses s.buf: copy a key that lives there.
			key = t
			if fn != nil && escaped {
				key = append([]byte(nil), t...)
			}
			end, closing, _, ok := s.tag()
			if !ok || !closing || string(end) != "key" {
				return false
			}
		}
		s.skipSpace()
		vname, closing, vempty, ok := s.tag()
		if !ok || closing || string(vname) == "key" || !s.count() {
			return false
		}
		kind, text, ok := s.value(vname, vempty, depth)
		if !ok {
			return false
		}
		if fn != nil && !fn(key, kind, text) {
			return false
		}
	}
}

// array reads the elements of an array whose opening tag was read (and
// counted), and its closing tag.
func (s *simpleScanner) array(depth int) bool {
	if depth > s.lim.MaxDepth {
		return false
	}
	for {
		s.skipSpace()
		name, closing, empty, ok := s.tag()
		if !ok {
			return false
		}
		if closing {
			return string(name) == "array"
		}
		if !s.count() {
			return false
		}
		if _, _, ok := s.value(name, empty, depth); !ok {
			return false
		}
	}
}
