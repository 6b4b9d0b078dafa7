package ui

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/groob/plist"

	"github.com/nanomdm/nanomdm/mdm"
)

// maxPrettyBytes bounds the result plists the console decodes to show;
// larger ones are shown as they are, cut.
const maxPrettyBytes = 1 << 20

// prettyPlist returns a result plist as indented XML for reading: binary
// plists decoded, XML ones re-indented. What does not decode is shown as
// text, or described when it is not text. The page escapes it.
func prettyPlist(raw []byte) string {
	if len(raw) == 0 {
		return ""
	}
	if len(raw) > maxPrettyBytes {
		return asText(raw[:maxPrettyBytes]) + "\n… (cut: " + fmt.Sprint(len(raw)) + " bytes in all)"
	}
	var v any
	if err := mdm.DecodePlist(raw, &v); err == nil {
		if out, err := plist.MarshalIndent(v, "  "); err == nil {
			// The XML declaration and DOCTYPE say nothing to a reader.
			text := string(out)
			if i := strings.Index(text, "<plist"); i >= 0 {
				text = text[i:]
			}
			return strings.TrimSpace(text)
		}
	}
	return asText(raw)
}

// asText is b when it is UTF-8 text, else a note of its size.
func asText(b []byte) string {
	if utf8.Valid(b) && !bytes.ContainsRune(b, 0) {
		return string(b)
	}
	return fmt.Sprintf("(%d bytes that are neither a plist this console can read nor text)", len(b))
}

//go:embed templates/*.html
var pageFS embed.FS

// pageNames are the page templates; each is parsed with the layout.
var pageNames = []string{"login", "error", "overview", "enrollments", "enrollment", "command", "pushcert"}

var funcs = template.FuncMap{
	// iso is the machine-readable time of a <time> element.
	"iso": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	// abs is the absolute time shown without JavaScript.
	"abs": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
	// path escapes a path segment (enrollment IDs may hold ?, # or %).
	"path":       url.PathEscape,
	"enrollment": enrollmentURL,
	"command":    func(uuid string) string { return Prefix + "/commands/" + url.PathEscape(uuid) },
	"lower":      strings.ToLower,
	"add":        func(a, b int) int { return a + b },
	"mul":        func(a, b int) int { return a * b },
	"hasPrefix":  strings.HasPrefix,
}

// parsePages parses each page with the layout. The templates are part
// of the binary, so a parse error is a bug: it panics at start-up.
func parsePages() map[string]*template.Template {
	pages := make(map[string]*template.Template, len(pageNames))
	for _, name := range pageNames {
		pages[name] = template.Must(template.New(name).Funcs(funcs).ParseFS(pageFS, "templates/layout.html", "templates/"+name+".html"))
	}
	return pages
}
