package plistcheck

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
)

// checkXML streams the document's tokens once, without recursion, and
// bounds what groob/plist's recursive XML parser would face.
//
// Depth is counted two ways. Open array and dict elements may nest at most
// lim.MaxDepth deep, matching the binary rule. Any element at all may sit
// at most lim.MaxDepth+2 deep (room for a <plist> wrapper and a leaf such
// as <string>), which bounds groob's recursion through other names too: it
// treats a nested <plist> as a wrapper and recurses into it.
//
// Every element except the top-level <plist> wrapper counts toward
// lim.MaxElements, dict keys included. Element names are compared by local
// name, as groob does.
//
// The document must be well-formed: one root element, matching tags,
// nothing but whitespace, comments, processing instructions and
// directives outside the root.
func checkXML(data []byte, lim Limits) error {
	d := xml.NewDecoder(bytes.NewReader(data))
	var (
		depth      int  // open elements
		containers int  // open array and dict elements
		wrapped    bool // the root element is <plist>
		roots      int
		elements   int
	)
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("xml plist: %w: %w", err, ErrMalformed)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if depth == 0 {
				roots++
				if roots > 1 {
					return fmt.Errorf("xml plist: second root element <%s>: %w", t.Name.Local, ErrMalformed)
				}
				if t.Name.Local == "plist" {
					wrapped = true
					depth++
					continue
				}
			}
			depth++
			if depth > lim.MaxDepth+2 {
				return fmt.Errorf("xml plist: element <%s> at depth %d exceeds %d: %w",
					t.Name.Local, depth, lim.MaxDepth+2, ErrTooDeep)
			}
			if isContainer(t.Name.Local) {
				containers++
				if containers > lim.MaxDepth {
					return fmt.Errorf("xml plist: <%s> nested %d deep exceeds %d: %w",
						t.Name.Local, containers, lim.MaxDepth, ErrTooDeep)
				}
			}
			elements++
			if elements > lim.MaxElements {
				return fmt.Errorf("xml plist: more than %d elements: %w", lim.MaxElements, ErrTooManyElements)
			}
		case xml.EndElement:
			// Token has already checked that this matches the open tag,
			// so t.Name is the name of the element being closed.
			depth--
			if depth == 0 && wrapped {
				continue
			}
			if isContainer(t.Name.Local) {
				containers--
			}
		case xml.CharData:
			if depth == 0 && len(bytes.TrimSpace(t)) > 0 {
				return fmt.Errorf("xml plist: text outside the root element: %w", ErrMalformed)
			}
		}
	}
	if roots == 0 {
		return fmt.Errorf("xml plist: no root element: %w", ErrMalformed)
	}
	return nil
}

func isContainer(local string) bool { return local == "array" || local == "dict" }
