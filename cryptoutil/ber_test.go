package cryptoutil

import (
	"bytes"
	"testing"
)

func TestCheckBER(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		data    []byte
		wantErr error // nil: accepted, errAny: any error
	}{
		{"primitive", []byte{0x05, 0x00}, nil},
		{"definite sequence", []byte{0x30, 0x03, 0x02, 0x01, 0x07}, nil},
		{"indefinite sequence", []byte{0x30, 0x80, 0x02, 0x01, 0x07, 0x00, 0x00}, nil},
		{"empty indefinite sequence", []byte{0x30, 0x80, 0x00, 0x00}, nil},
		{"long-form length", append([]byte{0x04, 0x81, 0x80}, make([]byte, 0x80)...), nil},
		{"high tag number", []byte{0x9f, 0x81, 0x01, 0x00}, nil},
		{"nesting at the limit", nestBER(maxBERDepth, true), nil},
		{"definite nesting at the limit", nestBER(maxBERDepth, false), nil},

		{"empty", nil, errBERTruncated},
		{"identifier only", []byte{0x30}, errBERTruncated},
		{"content past end", []byte{0x04, 0x05, 0x00}, errBERTruncated},
		{"long-form length past end", []byte{0x04, 0x82, 0x01}, errBERTruncated},
		{"child overruns definite parent", []byte{0x30, 0x02, 0x04, 0x02, 0x00, 0x00}, errBERTruncated},
		{"missing end-of-contents", []byte{0x30, 0x80, 0x05, 0x00}, errBERTruncated},
		{"nesting past the limit", nestBER(maxBERDepth+1, true), errBERTooDeep},
		{"definite nesting past the limit", nestBER(maxBERDepth+1, false), errBERTooDeep},
		{"very deep nesting", nestBER(100000, true), errBERTooDeep},
		{"indefinite items at the limit", indefiniteNulls(maxBERIndefiniteItems), nil},
		{"indefinite items past the limit", indefiniteNulls(maxBERIndefiniteItems + 1), errBERTooWide},
		{"many definite items", definiteNulls(20000), nil},
		{"trailing data", []byte{0x05, 0x00, 0x00}, errAny},
		{"primitive with indefinite length", []byte{0x04, 0x80, 0x00, 0x00}, errAny},
		{"five length bytes", []byte{0x04, 0x85, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00}, errAny},
		{"reserved length byte", []byte{0x04, 0xff}, errAny},
		{"huge length", []byte{0x04, 0x84, 0xff, 0xff, 0xff, 0xff, 0x00}, errBERTruncated},
		{"overlong tag number", []byte{0x1f, 0x81, 0x81, 0x81, 0x81, 0x01, 0x00}, errAny},
		{"truncated tag number", []byte{0x1f, 0x81}, errBERTruncated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkErr(t, checkBER(tt.data), tt.wantErr)
		})
	}
}

// indefiniteNulls returns an indefinite-length SEQUENCE of n NULLs.
func indefiniteNulls(n int) []byte {
	out := []byte{0x30, 0x80}
	out = append(out, bytes.Repeat([]byte{0x05, 0x00}, n)...)
	return append(out, 0x00, 0x00)
}

// definiteNulls returns a definite-length SEQUENCE of n NULLs.
func definiteNulls(n int) []byte {
	content := bytes.Repeat([]byte{0x05, 0x00}, n)
	return append(encodeDefiniteHeader(0x30, len(content)), content...)
}
