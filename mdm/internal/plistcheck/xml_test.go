package plistcheck

import (
	"strings"
	"testing"
)

const xmlProlog = `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
`

// nestedArraysXML returns depth nested arrays, the innermost holding one
// string, optionally inside a <plist> wrapper.
func nestedArraysXML(depth int, wrapped bool) []byte {
	var sb strings.Builder
	sb.WriteString(xmlProlog)
	if wrapped {
		sb.WriteString(`<plist version="1.0">`)
	}
	sb.WriteString(strings.Repeat("<array>", depth))
	sb.WriteString("<string>leaf</string>")
	sb.WriteString(strings.Repeat("</array>", depth))
	if wrapped {
		sb.WriteString("</plist>")
	}
	return []byte(sb.String())
}

// bigArrayXML returns an array of n integers in a <plist> wrapper: n+1
// elements.
func bigArrayXML(n int) []byte {
	var sb strings.Builder
	sb.WriteString(xmlProlog + `<plist version="1.0"><array>`)
	for i := 0; i < n; i++ {
		sb.WriteString("<integer>1</integer>")
	}
	sb.WriteString("</array></plist>")
	return []byte(sb.String())
}

func wrap(body string) []byte {
	return []byte(xmlProlog + `<plist version="1.0">` + body + `</plist>`)
}

func TestXMLHostile(t *testing.T) {
	t.Parallel()
	def := DefaultLimits
	cases := []checkCase{
		{"depth 32 (max)", nestedArraysXML(32, true), def, nil},
		{"depth 33", nestedArraysXML(33, true), def, ErrTooDeep},
		{"depth 32 unwrapped", nestedArraysXML(32, false), def, nil},
		{"depth 33 unwrapped", nestedArraysXML(33, false), def, ErrTooDeep},
		{"depth 100_000", nestedArraysXML(100_000, true), def, ErrTooDeep},
		{"depth 3 of 3", nestedArraysXML(3, true), Limits{MaxDepth: 3}, nil},
		{"depth 4 of 3", nestedArraysXML(4, true), Limits{MaxDepth: 3}, ErrTooDeep},
		{"dicts 33 deep", wrap(strings.Repeat("<dict><key>k</key>", 33) + "<true/>" + strings.Repeat("</dict>", 33)), def, ErrTooDeep},
		{"dicts 32 deep", wrap(strings.Repeat("<dict><key>k</key>", 32) + "<true/>" + strings.Repeat("</dict>", 32)), def, nil},
		{"nested plist wrappers", wrap(strings.Repeat("<plist>", 40) + "<true/>" + strings.Repeat("</plist>", 40)), def, ErrTooDeep},
		{"elements nested inside a string", wrap("<string>" + strings.Repeat("<a>", 100) + strings.Repeat("</a>", 100) + "</string>"), def, ErrTooDeep},

		// An array of n values is n+1 elements.
		{"100_000 elements (max)", bigArrayXML(99_999), def, nil},
		{"100_001 elements", bigArrayXML(100_000), def, ErrTooManyElements},
		{"200_000 elements", bigArrayXML(200_000), def, ErrTooManyElements},
		{"keys count", wrap("<dict><key>a</key><true/><key>b</key><false/></dict>"), Limits{MaxElements: 4}, ErrTooManyElements},
		{"keys count, at limit", wrap("<dict><key>a</key><true/><key>b</key><false/></dict>"), Limits{MaxElements: 5}, nil},

		{"empty", []byte(""), def, ErrMalformed},
		{"whitespace only", []byte(" \n\t"), def, ErrMalformed},
		{"prolog only", []byte(xmlProlog), def, ErrMalformed},
		{"unclosed", []byte(xmlProlog + "<plist><dict><key>a</key><true/>"), def, ErrMalformed},
		{"mismatched end tag", wrap("<dict><key>a</key><true/></array>"), def, ErrMalformed},
		{"stray end tag", []byte("</plist>"), def, ErrMalformed},
		{"two roots", []byte("<plist><true/></plist><plist><true/></plist>"), def, ErrMalformed},
		{"text after root", []byte("<plist><true/></plist>trailing"), def, ErrMalformed},
		{"text before root", []byte("junk<plist><true/></plist>"), def, ErrMalformed},
		{"undefined entity", wrap("<string>&bogus;</string>"), def, ErrMalformed},
		{"bad attribute", []byte(`<plist version=1.0><true/></plist>`), def, ErrMalformed},
		{"binary garbage", []byte{0xff, 0xfe, 0x00, '<'}, def, ErrMalformed},
		{"undeclared charset", []byte(`<?xml version="1.0" encoding="UTF-16"?><plist><true/></plist>`), def, ErrMalformed},

		{"comment and whitespace around root", []byte("<!-- hi -->\n<plist><true/></plist>\n<!-- bye -->\n"), def, nil},
		{"entities and CDATA", wrap("<string>a &amp; b &#x263A; <![CDATA[<not a tag>]]></string>"), def, nil},
		{"bare dict root", []byte("<dict><key>a</key><string>b</string></dict>"), def, nil},
		{"unknown element (groob errors, not a hazard)", wrap("<bogus/>"), def, nil},
	}
	runCheckCases(t, cases)
}
