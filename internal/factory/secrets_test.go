package factory

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
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

// BenchmarkRedactor is the cost of redaction on a task's output (b.SetBytes: MB/s), with two secrets of the build.
func BenchmarkRedactor(b *testing.B) {
	values := map[string][]byte{"A": []byte("s3cr3t-T0ken-0123456789"), "B": []byte("another-secret-value\nwith-two-lines")}
	line := []byte("ok   github.com/ssf-dev/ssf/internal/factory  0.014s  some ordinary build output here\n")
	chunk := bytes.Repeat(line, 32<<10/len(line))
	b.SetBytes(int64(len(chunk)))
	w := newRedactor(io.Discard, values)
	for b.Loop() {
		w.Write(chunk)
	}
}

// redactReference marks every occurrence of every pattern in the whole stream at once and writes each run of
// marked bytes as "***": what the streaming redactor must produce however the stream is cut.
func redactReference(values map[string][]byte, stream []byte) string {
	marked := make([]bool, len(stream))
	for _, p := range redactionPatterns(values) {
		for i := 0; i+len(p) <= len(stream); i++ {
			if bytes.Equal(stream[i:i+len(p)], p) {
				for k := i; k < i+len(p); k++ {
					marked[k] = true
				}
			}
		}
	}
	var out []byte
	for i, c := range stream {
		switch {
		case !marked[i]:
			out = append(out, c)
		case i == 0 || !marked[i-1]:
			out = append(out, "***"...)
		}
	}
	return string(out)
}

func TestRedactorMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const alphabet = "ab\n"
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		return b
	}
	for range 2000 {
		values := map[string][]byte{"A": random(4 + rng.IntN(4)), "B": random(4 + rng.IntN(6))}
		stream := random(rng.IntN(200))
		var chunks []string
		for rest := stream; len(rest) > 0; {
			n := 1 + rng.IntN(min(len(rest), 9))
			chunks = append(chunks, string(rest[:n]))
			rest = rest[n:]
		}
		if got, want := redact(values, chunks...), redactReference(values, stream); got != want {
			t.Fatalf("values %q, chunks %q:\ngot  %q\nwant %q", values, chunks, got, want)
		}
	}
}

// A root file system without a real /run/secrets (unpacked by an earlier ssf, or an image with a link there) is
// refused with what to do: the runtime would otherwise create the mount point inside the shared cache.
func TestSecretsMountPointMustExist(t *testing.T) {
	dir := t.TempDir()
	if err := checkSecretsMountPoint(dir); err == nil || !strings.Contains(err.Error(), "no directory /run") {
		t.Fatalf("no /run: %v", err)
	}
	os.MkdirAll(filepath.Join(dir, "run"), 0o755)
	os.Symlink("/tmp", filepath.Join(dir, "run", "secrets"))
	if err := checkSecretsMountPoint(dir); err == nil || !strings.Contains(err.Error(), "/run/secrets") || !strings.Contains(err.Error(), "remove "+dir) {
		t.Fatalf("a link at /run/secrets: %v", err)
	}
	os.Remove(filepath.Join(dir, "run", "secrets"))
	os.Mkdir(filepath.Join(dir, "run", "secrets"), 0o755)
	if err := checkSecretsMountPoint(dir); err != nil {
		t.Fatal(err)
	}
}

// The control plane's own text is redacted too: an error (a TaskError's reason and hint included, still found by
// errors.As) and its progress lines, which can quote what a step made.
func TestControlPlaneTextIsRedacted(t *testing.T) {
	values := map[string][]byte{"T": []byte("s3cr3t-value")}
	te := &TaskError{Task: "t", ExitCode: -1, Reason: `"d/s3cr3t-value" is a symlink`, Hint: "kept d/s3cr3t-value"}
	err := redactError(compileRedaction(values), fmt.Errorf("wrapped: %w", te))
	if got := err.Error(); got != `wrapped: task "t" failed: "d/***" is a symlink` {
		t.Errorf("Error() = %q", got)
	}
	var got *TaskError
	if !errors.As(err, &got) || got.Hint != "kept d/***" || got.ExitCode != -1 {
		t.Errorf("errors.As: %+v", got)
	}
	if redactError(compileRedaction(values), nil) != nil || redactError(nil, te) != te {
		t.Errorf("nil error or no secrets: changed")
	}
	var out bytes.Buffer
	l := &lineLog{w: &out, redact: func(b []byte) []byte { return redactBytes(values, b) }}
	l.printf("output %s refused", "s3cr3t-value")
	if out.String() != "[ssf] output *** refused\n" {
		t.Errorf("printf wrote %q", out.String())
	}
}

// Hex, URL escaping and a JSON string of a value are redacted too (the encodings that are not are in
// docs/secrets.md).
func TestRedactorOtherEncodings(t *testing.T) {
	tok := `p+ss/w"rd<&>\` + "\x01=="
	values := map[string][]byte{"TOK": []byte(tok)}
	for _, enc := range []string{
		fmt.Sprintf("%x", tok), fmt.Sprintf("%X", tok), url.QueryEscape(tok), url.PathEscape(tok),
		`p+ss/w\"rd\u003c\u0026\u003e\\\u0001==`, `p+ss/w\"rd<&>\\\u0001==`, `p+ss/w"rd<&>\\x01==`,
	} {
		if got := redact(values, "v=", enc, "\n"); got != "v=***\n" {
			t.Errorf("%q: got %q", enc, got)
		}
	}
}
