package factory

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"
)

// redact runs the chunks through a redactor for values and returns what it wrote.
func redact(values map[string][]byte, chunks ...string) string {
	var out bytes.Buffer
	w := newRedactor(&out, values)
	for _, c := range chunks {
		w.Write([]byte(c))
	}
	flushRedactor(w)
	return out.String()
}

func TestRedactor(t *testing.T) {
	tok := "s3cr3t-T0ken"
	multi := "line-one-abc\nline-two-def"
	values := map[string][]byte{"TOK": []byte(tok), "MULTI": []byte(multi)}
	b64 := base64.StdEncoding.EncodeToString([]byte(tok))
	basic := base64.StdEncoding.EncodeToString([]byte("user:" + tok)) // the value at an offset of a base64 text
	for _, tc := range []struct {
		name   string
		chunks []string
		want   string
	}{
		{"plain", []string{"a " + tok + " b\n"}, "a *** b\n"},
		{"split over writes", []string{"a s3cr", "3t-T0", "ken b\n"}, "a *** b\n"},
		{"byte by byte", strings.Split("x"+tok+"y\n", ""), "x***y\n"},
		{"twice, adjacent", []string{tok + tok + "\n"}, "***\n"},
		{"at the end, no newline", []string{"v=" + tok}, "v=***"},
		{"prefix only", []string{"s3cr3t-T0ke\n"}, "s3cr3t-T0ke\n"},
		{"base64", []string{"b64=" + b64 + "\n"}, "b64=***\n"},
		{"base64 url", []string{base64.RawURLEncoding.EncodeToString([]byte(tok)) + "\n"}, "***\n"},
		{"embedded base64", []string{"Authorization: Basic " + basic + "\n"}, "Authorization: Basic ***\n"},
		{"value with a newline", []string{"<" + multi + ">\n"}, "<***>\n"},
		{"newline split over writes", []string{"<line-one-abc", "\nline-two-def>\n"}, "<***>\n"},
		{"one line of it", []string{"line-two-def\n"}, "***\n"},
		{"nothing to hide", []string{"hello\n", "world\n"}, "hello\nworld\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := redact(values, tc.chunks...)
			if tc.name == "embedded base64" {
				// The first and last characters of the value's part also encode neighbouring bytes.
				if strings.Contains(got, basic[8:len(basic)-2]) || !strings.Contains(got, "***") {
					t.Fatalf("got %q", got)
				}
				return
			}
			if tc.name == "base64" || tc.name == "base64 url" {
				// The last character of an encoding holds bits of the next byte too: it may stay.
				if strings.Contains(got, b64[:len(b64)-2]) || !strings.HasPrefix(strings.TrimPrefix(got, "b64="), "***") {
					t.Fatalf("got %q", got)
				}
				return
			}
			if got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// Ordinary output is not held back: only a possible start of a value is.
func TestRedactorHoldsOnlyPartialMatches(t *testing.T) {
	var out bytes.Buffer
	w := newRedactor(&out, map[string][]byte{"TOK": []byte("s3cr3t-T0ken")})
	w.Write([]byte("done\n"))
	if out.String() != "done\n" {
		t.Fatalf("after a plain line: %q", out.String())
	}
	w.Write([]byte("x s3cr"))
	if out.String() != "done\nx " {
		t.Fatalf("after a partial match: %q", out.String())
	}
}
