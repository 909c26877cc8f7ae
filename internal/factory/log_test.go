package factory

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// A step's output reaches the user's terminal only with its controls escaped: C0 controls and DEL, the C1
// controls, which xterm obeys even UTF-8 encoded (U+009B is CSI: "\u009b2K\u009b1A" erases a line and moves up,
// so a step could overwrite ssf's own lines), and bytes that are not UTF-8 (a lone 0x9B is CSI on a terminal not
// in UTF-8 mode). Printable text, UTF-8 included, passes unchanged.
func TestTerminalSafeEscapesControls(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"plain text, tabs\tand ünïcödé ✓\n", "plain text, tabs\tand ünïcödé ✓\n"},
		{"\x1b[2K\r[ssf] forged\n", `\x1b[2K\x0d[ssf] forged` + "\n"},
		{"a\u009b2K\u009b1A[ssf] forged\n", `a\u009b2K\u009b1A[ssf] forged` + "\n"},
		{"a\x9b2Kb\x7f\n", `a\x9b2Kb\x7f` + "\n"},
		{"\u0085next line\n", `\u0085next line` + "\n"},
		{"mid\nline\n", `mid\x0aline` + "\n"},
		{"file\u202etxt.exe\u2066x\u2069\n", `file\u202etxt.exe\u2066x\u2069` + "\n"},
	} {
		got := string(terminalSafe([]byte(tc.in)))
		if got != tc.want {
			t.Errorf("terminalSafe(%q) = %q, want %q", tc.in, got, tc.want)
		}
		for _, c := range []byte(got) {
			if c < 0x20 && c != '\t' && c != '\n' || c == 0x7f {
				t.Errorf("terminalSafe(%q) kept control byte %#x", tc.in, c)
			}
		}
		if !utf8.ValidString(got) || strings.ContainsFunc(got, func(r rune) bool { return 0x80 <= r && r <= 0x9f }) {
			t.Errorf("terminalSafe(%q) = %q: not UTF-8, or a C1 control kept", tc.in, got)
		}
	}
}
