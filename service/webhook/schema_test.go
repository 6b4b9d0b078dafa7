package webhook

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"
	"time"
)

// jsonSchema is the part of JSON Schema (2020-12) that event.schema.json
// uses. loadSchema refuses any other keyword, so a schema change that this
// checker does not understand fails loudly instead of passing silently.
type jsonSchema struct {
	Ref                  string                 `json:"$ref"`
	Type                 string                 `json:"type"`
	Required             []string               `json:"required"`
	Properties           map[string]*jsonSchema `json:"properties"`
	AdditionalProperties *jsonSchema            `json:"additionalProperties"`
	Enum                 []string               `json:"enum"`
	Format               string                 `json:"format"`
	ContentEncoding      string                 `json:"contentEncoding"`
	Defs                 map[string]*jsonSchema `json:"$defs"`
}

// knownKeywords are checked (first group) or pure annotations (second).
var knownKeywords = map[string]bool{
	"$ref": true, "type": true, "required": true, "properties": true,
	"additionalProperties": true, "enum": true, "format": true,
	"contentEncoding": true, "$defs": true,
	"$schema": true, "title": true, "description": true, "contentMediaType": true,
}

// checkKeywords walks the raw schema and reports keywords we do not check.
func checkKeywords(path string, raw json.RawMessage) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	for k, v := range m {
		if !knownKeywords[k] {
			return fmt.Errorf("%s: schema keyword %q not supported by the checker", path, k)
		}
		switch k {
		case "properties", "$defs":
			var sub map[string]json.RawMessage
			if err := json.Unmarshal(v, &sub); err != nil {
				return fmt.Errorf("%s/%s: %w", path, k, err)
			}
			for name, s := range sub {
				if err := checkKeywords(path+"/"+k+"/"+name, s); err != nil {
					return err
				}
			}
		case "additionalProperties":
			if err := checkKeywords(path+"/"+k, v); err != nil {
				return err
			}
		}
	}
	return nil
}

func loadSchema(t testing.TB, path string) *jsonSchema {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading schema: %v", err)
	}
	if err := checkKeywords("#", b); err != nil {
		t.Fatal(err)
	}
	s := new(jsonSchema)
	if err := json.Unmarshal(b, s); err != nil {
		t.Fatalf("decoding schema: %v", err)
	}
	return s
}

// validateJSON checks doc against the schema. Unlike JSON Schema, an
// object property the schema does not declare is an error too: our events
// must not carry fields the reference format does not know.
func (root *jsonSchema) validateJSON(doc []byte) []error {
	d := json.NewDecoder(bytes.NewReader(doc))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return []error{fmt.Errorf("decoding document: %w", err)}
	}
	return root.validate("$", root, v)
}

func (root *jsonSchema) resolve(s *jsonSchema) (*jsonSchema, error) {
	for s.Ref != "" {
		name, ok := strings.CutPrefix(s.Ref, "#/$defs/")
		if !ok || root.Defs[name] == nil {
			return nil, fmt.Errorf("unresolvable $ref %q", s.Ref)
		}
		s = root.Defs[name]
	}
	return s, nil
}

func (root *jsonSchema) validate(path string, s *jsonSchema, v any) []error {
	s, err := root.resolve(s)
	if err != nil {
		return []error{fmt.Errorf("%s: %w", path, err)}
	}
	var errs []error
	fail := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
	}
	switch s.Type {
	case "":
	case "object":
		if _, ok := v.(map[string]any); !ok {
			fail("want object, have %T", v)
			return errs
		}
	case "string":
		if _, ok := v.(string); !ok {
			fail("want string, have %T", v)
			return errs
		}
	case "integer":
		n, ok := v.(json.Number)
		if !ok {
			fail("want integer, have %T", v)
			return errs
		}
		if _, err := n.Int64(); err != nil {
			fail("want integer, have %s", n)
		}
	default:
		fail("schema type %q not supported by the checker", s.Type)
	}
	if len(s.Enum) > 0 {
		str, _ := v.(string)
		found := false
		for _, e := range s.Enum {
			found = found || e == str
		}
		if !found {
			fail("%v not in enum %v", v, s.Enum)
		}
	}
	if str, ok := v.(string); ok {
		if s.Format == "date-time" {
			if _, err := time.Parse(time.RFC3339Nano, str); err != nil {
				fail("not a date-time: %v", err)
			}
		}
		if s.ContentEncoding == "base64" {
			if _, err := base64.StdEncoding.DecodeString(str); err != nil {
				fail("not base64: %v", err)
			}
		}
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return errs
	}
	for _, name := range s.Required {
		if _, ok := obj[name]; !ok {
			fail("required property %q missing", name)
		}
	}
	names := make([]string, 0, len(obj))
	for name := range obj {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		sub := s.Properties[name]
		if sub == nil {
			sub = s.AdditionalProperties
		}
		if sub == nil {
			fail("property %q not declared in the schema", name)
			continue
		}
		errs = append(errs, root.validate(path+"."+name, sub, obj[name])...)
	}
	return errs
}

// TestSchemaChecker makes sure the checker rejects what it should, so a
// passing validation means something.
func TestSchemaChecker(t *testing.T) {
	root := loadSchema(t, "testdata/webhook/event.schema.json")
	for _, tc := range []struct {
		name string
		doc  string
		want string // substring of the first error; "" = valid
	}{
		{"minimal", `{"topic":"mdm.Connect","created_at":"2024-01-02T03:04:05Z"}`, ""},
		{"missing created_at", `{"topic":"mdm.Connect"}`, `required property "created_at"`},
		{"bad topic", `{"topic":"mdm.Bogus","created_at":"2024-01-02T03:04:05Z"}`, "not in enum"},
		{"bad time", `{"topic":"mdm.Connect","created_at":"yesterday"}`, "not a date-time"},
		{"unknown field", `{"topic":"mdm.Connect","created_at":"2024-01-02T03:04:05Z","x":1}`, `"x" not declared`},
		{"ack without status", `{"topic":"mdm.Connect","created_at":"2024-01-02T03:04:05Z","acknowledge_event":{"raw_payload":""}}`, `required property "status"`},
		{"tally not integer", `{"topic":"mdm.TokenUpdate","created_at":"2024-01-02T03:04:05Z","checkin_event":{"raw_payload":"","token_update_tally":1.5}}`, "want integer"},
		{"ids type enum", `{"topic":"mdm.TokenUpdate","created_at":"2024-01-02T03:04:05Z","checkin_event":{"raw_payload":"","ids":{"id":"a","type":"Phone"}}}`, "not in enum"},
		{"url_params values", `{"topic":"mdm.TokenUpdate","created_at":"2024-01-02T03:04:05Z","checkin_event":{"raw_payload":"","url_params":{"a":1}}}`, "want string"},
		{"raw_payload base64", `{"topic":"mdm.TokenUpdate","created_at":"2024-01-02T03:04:05Z","checkin_event":{"raw_payload":"%%%"}}`, "not base64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			errs := root.validateJSON([]byte(tc.doc))
			switch {
			case tc.want == "" && len(errs) > 0:
				t.Errorf("have errors %v, want valid", errs)
			case tc.want != "" && len(errs) == 0:
				t.Errorf("have valid, want error containing %q", tc.want)
			case tc.want != "" && !strings.Contains(errs[0].Error(), tc.want):
				t.Errorf("have error %q, want one containing %q", errs[0], tc.want)
			}
		})
	}
}
