package plistcheck

import (
	"strings"
	"testing"
	"time"

	"github.com/groob/plist"
	"github.com/nanomdm/nanomdm/internal/fixture"
)

// scanResult is what ScanSimpleXML reported: root-dict kinds and, for
// strings, texts, the last of a repeated key winning as in groob/plist.
type scanResult struct {
	kinds   map[string]Kind
	strings map[string]string
}

func scan(data []byte, lim Limits) (scanResult, bool) {
	r := scanResult{kinds: map[string]Kind{}, strings: map[string]string{}}
	ok := ScanSimpleXML(data, lim, func(key []byte, kind Kind, text []byte) bool {
		r.kinds[string(key)] = kind
		if kind == String {
			r.strings[string(key)] = string(text)
		} else {
			delete(r.strings, string(key))
		}
		return true
	})
	return r, ok
}

// kindOf is the Kind of a value groob/plist decoded into an interface.
func kindOf(v any) Kind {
	switch v.(type) {
	case string:
		return String
	case uint64, int64:
		return Integer
	case float64, float32:
		return Real
	case bool:
		return Boolean
	case time.Time:
		return Date
	case []byte:
		return Data
	case map[string]any:
		return Dict
	case []any:
		return Array
	}
	return 0
}

// checkAgrees fails the test unless Check and groob/plist agree with an
// accepting ScanSimpleXML: no error, the same root keys with the same
// kinds, and the same strings.
func checkAgrees(t *testing.T, data []byte, lim Limits, r scanResult) {
	t.Helper()
	if err := Check(data, lim); err != nil {
		t.Fatalf("ScanSimpleXML accepted %q, but Check: %v", data, err)
	}
	var m map[string]any
	if err := plist.Unmarshal(data, &m); err != nil {
		t.Fatalf("ScanSimpleXML accepted %q, but groob/plist: %v", data, err)
	}
	if len(m) != len(r.kinds) {
		t.Fatalf("%q: groob/plist has %d root keys, ScanSimpleXML reported %d", data, len(m), len(r.kinds))
	}
	for k, v := range m {
		if have, want := r.kinds[k], kindOf(v); have != want {
			t.Fatalf("%q: key %q: ScanSimpleXML kind %d, groob/plist %T", data, k, have, v)
		}
		if s, ok := v.(string); ok && r.strings[k] != s {
			t.Fatalf("%q: key %q: ScanSimpleXML %q, groob/plist %q", data, k, r.strings[k], s)
		}
	}
	// The struct path: a string field receives the same value.
	var st struct{ Status, CommandUUID string }
	isString := func(k string) bool { v, ok := m[k]; return !ok || kindOf(v) == String }
	if isString("Status") && isString("CommandUUID") {
		if err := plist.Unmarshal(data, &st); err != nil {
			t.Fatalf("%q: groob/plist into a struct: %v", data, err)
		}
		if st.Status != r.strings["Status"] || st.CommandUUID != r.strings["CommandUUID"] {
			t.Fatalf("%q: struct decode %+v, ScanSimpleXML %v", data, st, r.strings)
		}
	}
}

const header = `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
`

func doc(body string) []byte { return []byte(header + body + "\n</plist>\n") }

func TestScanSimpleXMLCaptures(t *testing.T) {
	t.Parallel()
	for _, name := range captures {
		t.Run(name, func(t *testing.T) {
			data := fixture.Read(t, name)
			r, ok := scan(data, DefaultLimits)
			if !ok {
				t.Fatalf("ScanSimpleXML refused a real capture")
			}
			checkAgrees(t, data, DefaultLimits, r)
		})
	}
}

func TestScanSimpleXML(t *testing.T) {
	t.Parallel()
	accepted := []struct {
		name string
		data []byte
		want map[string]string
	}{
		{"entities", doc(`<dict><key>a&amp;b</key><string>&lt;x&gt; &quot;q&quot; &apos;s&apos;</string></dict>`),
			map[string]string{"a&b": `<x> "q" 's'`}},
		{"unicode", doc("<dict><key>DeviceName</key><string>Zoë’s iPhone 😀</string></dict>"),
			map[string]string{"DeviceName": "Zoë’s iPhone 😀"}},
		{"empty elements", doc(`<dict><key/><string/><key>d</key><dict/><key>a</key><array/><key>x</key><data/></dict>`),
			map[string]string{"": ""}},
		{"repeated key, last wins", doc(`<dict><key>Status</key><integer>1</integer><key>Status</key><string>Idle</string></dict>`),
			map[string]string{"Status": "Idle"}},
		{"no declaration or doctype", []byte(`<plist><dict><key>Status</key><string>Idle</string></dict></plist>`),
			map[string]string{"Status": "Idle"}},
		{"leaves", doc(`<dict><key>i</key><integer> -5 </integer><key>u</key><integer>18446744073709551615</integer>` +
			`<key>r</key><real>1e3</real><key>e</key><real></real><key>t</key><true/><key>f</key><false></false>` +
			`<key>d</key><date>2024-06-01T02:13:44Z</date><key>b</key><data>AAEC
	AwQ=</data><key>n</key><array><dict><key>k</key><string>v</string></dict><array><integer>1</integer></array></array></dict>`), nil},
	}
	for _, tc := range accepted {
		t.Run(tc.name, func(t *testing.T) {
			r, ok := scan(tc.data, DefaultLimits)
			if !ok {
				t.Fatalf("ScanSimpleXML refused %q", tc.data)
			}
			checkAgrees(t, tc.data, DefaultLimits, r)
			for k, v := range tc.want {
				if r.strings[k] != v {
					t.Errorf("key %q: have %q, want %q", k, r.strings[k], v)
				}
			}
		})
	}

	refused := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"binary", []byte("bplist00")},
		{"root array", doc(`<array/>`)},
		{"root string", doc(`<string>x</string>`)},
		{"empty root dict", doc(`<dict/>`)},
		{"attribute", doc(`<dict><key>a</key><string x="1">v</string></dict>`)},
		{"space in tag", doc(`<dict ><key>a</key><string>v</string></dict>`)},
		{"comment", doc(`<dict><!-- c --><key>a</key><string>v</string></dict>`)},
		{"cdata", doc(`<dict><key>a</key><string><![CDATA[v]]></string></dict>`)},
		{"carriage return", []byte(strings.ReplaceAll(string(doc(`<dict><key>a</key><string>v</string></dict>`)), "\n", "\r\n"))},
		{"character reference", doc(`<dict><key>a</key><string>&#65;</string></dict>`)},
		{"unknown entity", doc(`<dict><key>a</key><string>&nbsp;</string></dict>`)},
		{"bare ampersand", doc(`<dict><key>a</key><string>a & b</string></dict>`)},
		{"]]> in text", doc(`<dict><key>a</key><string>]]></string></dict>`)},
		{"control character", doc("<dict><key>a</key><string>\x01</string></dict>")},
		{"invalid UTF-8", doc("<dict><key>a</key><string>\xff</string></dict>")},
		{"U+FFFE", doc("<dict><key>a</key><string>\uFFFE</string></dict>")},
		{"text between elements", doc(`<dict>x<key>a</key><string>v</string></dict>`)},
		{"value without key", doc(`<dict><string>v</string></dict>`)},
		{"key without value", doc(`<dict><key>a</key></dict>`)},
		{"two keys", doc(`<dict><key>a</key><key>b</key><string>v</string></dict>`)},
		{"key in array", doc(`<dict><key>a</key><array><key>b</key></array></dict>`)},
		{"element in string", doc(`<dict><key>a</key><string>v<b/></string></dict>`)},
		{"unknown element", doc(`<dict><key>a</key><uid>1</uid></dict>`)},
		{"mismatched tag", doc(`<dict><key>a</key><string>v</integer></dict>`)},
		{"bad integer", doc(`<dict><key>a</key><integer>1.5</integer></dict>`)},
		{"empty integer", doc(`<dict><key>a</key><integer/></dict>`)},
		{"integer overflow", doc(`<dict><key>a</key><integer>18446744073709551616</integer></dict>`)},
		{"bad real", doc(`<dict><key>a</key><real>x</real></dict>`)},
		{"bad date", doc(`<dict><key>a</key><date>yesterday</date></dict>`)},
		{"empty date", doc(`<dict><key>a</key><date/></dict>`)},
		{"bad data", doc(`<dict><key>a</key><data>!!</data></dict>`)},
		{"text in true", doc(`<dict><key>a</key><true>1</true></dict>`)},
		{"unclosed", []byte(header + `<dict><key>a</key><string>v</string>`)},
		{"no plist end", []byte(header + `<dict><key>a</key><string>v</string></dict>`)},
		{"trailing text", append(doc(`<dict/>`), "x"...)},
		{"trailing element", append(doc(`<dict><key>a</key><string>v</string></dict>`), "<plist/>"...)},
		{"other declaration", []byte(`<?xml version="1.0" encoding="ISO-8859-1"?><plist><dict/></plist>`)},
		{"declaration after space", []byte(` <?xml version="1.0"?><plist><dict><key>a</key><string>v</string></dict></plist>`)},
		{"other doctype", []byte(`<!DOCTYPE x><plist><dict><key>a</key><string>v</string></dict></plist>`)},
		{"plist attributes", []byte(`<plist version="2.0"><dict><key>a</key><string>v</string></dict></plist>`)},
		{"too deep", doc(`<dict><key>a</key>` + strings.Repeat("<array>", DefaultLimits.MaxDepth) + strings.Repeat("</array>", DefaultLimits.MaxDepth) + `</dict>`)},
		{"too deep, empty", doc(`<dict><key>a</key>` + strings.Repeat("<array>", DefaultLimits.MaxDepth-1) + "<dict/>" + strings.Repeat("</array>", DefaultLimits.MaxDepth-1) + `</dict>`)},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			if _, ok := scan(tc.data, DefaultLimits); ok {
				t.Fatalf("ScanSimpleXML accepted %q", tc.data)
			}
		})
	}

	t.Run("deepest allowed", func(t *testing.T) {
		n := DefaultLimits.MaxDepth - 1
		data := doc(`<dict><key>a</key>` + strings.Repeat("<array>", n) + strings.Repeat("</array>", n) + `</dict>`)
		r, ok := scan(data, DefaultLimits)
		if !ok {
			t.Fatalf("ScanSimpleXML refused %d nested containers", n+1)
		}
		checkAgrees(t, data, DefaultLimits, r)
	})
	t.Run("element limit", func(t *testing.T) {
		lim := Limits{MaxElements: 5}
		// dict, key, array, 2 strings: 5 elements.
		at := doc(`<dict><key>a</key><array><string/><string/></array></dict>`)
		if r, ok := scan(at, lim); !ok {
			t.Errorf("ScanSimpleXML refused %d elements with a limit of %d", 5, lim.MaxElements)
		} else {
			checkAgrees(t, at, lim, r)
		}
		over := doc(`<dict><key>a</key><array><string/><string/><string/></array></dict>`)
		if _, ok := scan(over, lim); ok {
			t.Errorf("ScanSimpleXML accepted 6 elements with a limit of %d", lim.MaxElements)
		}
		if err := Check(over, lim); err == nil {
			t.Errorf("Check accepted 6 elements with a limit of %d: the limits differ", lim.MaxElements)
		}
	})
	t.Run("fn stops the scan", func(t *testing.T) {
		data := doc(`<dict><key>a</key><string>v</string></dict>`)
		if ScanSimpleXML(data, DefaultLimits, func([]byte, Kind, []byte) bool { return false }) {
			t.Errorf("ScanSimpleXML returned true after fn returned false")
		}
	})
}

// FuzzScanSimpleXML checks the promise of ScanSimpleXML: whatever it
// accepts, Check accepts and groob/plist decodes to the same root keys,
// kinds and strings.
func FuzzScanSimpleXML(f *testing.F) {
	for _, name := range captures {
		f.Add(fixture.Read(f, name))
	}
	for _, body := range []string{
		`<dict><key>a&amp;b</key><string>&lt;x&gt;</string><key>n</key><array><integer>-1</integer><real>1.5</real><date>2020-01-01T00:00:00Z</date><data>AAEC</data><true/><false/></array></dict>`,
		`<dict><key>Status</key><string>Acknowledged</string><key>QueryResponses</key><dict><key>DeviceName</key><string>Zoë’s</string><key>Cap</key><real>119.2</real></dict></dict>`,
		`<dict><key>Status</key><integer>1</integer><key>Status</key><string>Idle</string><key/><string/></dict>`,
	} {
		f.Add(doc(body))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, ok := scan(data, DefaultLimits)
		if !ok {
			return
		}
		checkAgrees(t, data, DefaultLimits, r)
	})
}

func BenchmarkScanSimpleXML(b *testing.B) {
	data := fixture.Read(b, benchCapture)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if !ScanSimpleXML(data, DefaultLimits, func([]byte, Kind, []byte) bool { return true }) {
			b.Fatal("ScanSimpleXML refused the capture")
		}
	}
}
