package content

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	lower := strings.Repeat("ab", 32)
	upper := strings.ToUpper(lower)
	for _, tc := range []struct {
		in                  string
		parse, fold, fromHx bool
	}{
		{in: "sha256:" + lower, parse: true, fold: true},
		{in: "sha256:" + upper, fold: true},
		{in: lower, fromHx: true},
		{in: upper, fromHx: true},
		{in: "sha512:" + strings.Repeat(lower, 2)},
		{in: "sha256:" + lower[:63]},
		{in: "sha256:" + lower + "0"},
		{in: "SHA256:" + lower},
		{in: "sha256:" + lower[:63] + "g"},
		{in: ""},
		{in: "sha256:"},
		{in: " sha256:" + lower},
	} {
		d, err := Parse(tc.in)
		if (err == nil) != tc.parse || err == nil && string(d) != tc.in {
			t.Errorf("Parse(%q) = %q, %v; want ok=%v", tc.in, d, err, tc.parse)
		}
		d, err = ParseFold(tc.in)
		if (err == nil) != tc.fold || err == nil && string(d) != strings.ToLower(tc.in) {
			t.Errorf("ParseFold(%q) = %q, %v; want ok=%v", tc.in, d, err, tc.fold)
		}
		d, err = FromHex(tc.in)
		if (err == nil) != tc.fromHx || err == nil && string(d) != "sha256:"+strings.ToLower(tc.in) {
			t.Errorf("FromHex(%q) = %q, %v; want ok=%v", tc.in, d, err, tc.fromHx)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add("sha256:" + strings.Repeat("0", 64))
	f.Fuzz(func(t *testing.T, s string) {
		if d, err := Parse(s); err == nil && (d.Validate() != nil || strings.ToLower(string(d)) != string(d)) {
			t.Fatalf("Parse(%q) accepted %q", s, d)
		}
		if d, err := ParseFold(s); err == nil && (d.Validate() != nil || d.Encoded() != strings.ToLower(s[7:])) {
			t.Fatalf("ParseFold(%q) accepted %q", s, d)
		}
	})
}
