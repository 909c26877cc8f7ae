package pipeline

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// Real mistakes people make in YAML are reported at the line holding the mistake, not at the line where the
// enclosing block starts (which is where the YAML library places most of them).
func TestSyntaxErrorLine(t *testing.T) {
	// Lines 6-8 of each file: spec.tasks and the start of one task; each case adds lines from 9.
	const start = head + "  tasks:\n    - name: build\n      steps: [{name: make, run: make}]\n"
	for _, tc := range []struct {
		name string
		file string
		line int
		msg  []string
	}{
		{"key indented less than its siblings", start + "     outputs: [bin]\n", 9,
			[]string{"did not find expected '-' indicator", "in the block that starts at line 6"}},
		{"key indented more than its siblings", start + "        outputs: [bin]\n", 9,
			[]string{"did not find expected key", "check this line's indentation"}},
		{"list item key indented less", head + "  tasks:\n    - name: build\n      steps:\n        - name: make\n         run: make\n      outputs: [bin]\n", 10,
			[]string{"did not find expected '-' indicator"}},
		{"unclosed single quote", start + "      outputs: ['bin]\n      env: {A: b}\n", 9,
			[]string{"found unexpected end of stream: a quote or bracket opened on this line is never closed"}},
		{"unclosed double quote in a step", head + "  tasks:\n    - name: build\n      steps:\n        - name: make\n          run: \"make all\n      outputs: [bin]\n", 10,
			[]string{"never closed"}},
		{"unclosed flow list", start + "      outputs: [bin\n      env: {A: b}\n", 9,
			[]string{"did not find expected ',' or ']'"}},
		{"tab indent", start + "\toutputs: [bin]\n", 9,
			[]string{"indented with a tab: YAML indents with spaces only"}},
		{"tab after spaces", start + "      \toutputs: [bin]\n", 9, []string{"indented with a tab"}},
		{"no space after colon", start + "      outputs:[bin]\n      env: {A: b}\n", 9, []string{"invalid YAML"}},
		{"no newline at the end", start + "     outputs: [bin]", 9, []string{"did not find expected '-' indicator"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("ssf.yaml", []byte(tc.file))
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("Parse: %v, want an *Error", err)
			}
			if pe.Line != tc.line {
				t.Errorf("error at line %d, want %d: %v\n%s", pe.Line, tc.line, err, numbered(tc.file))
			}
			for _, m := range tc.msg {
				if !strings.Contains(pe.Msg, m) {
					t.Errorf("message %q does not contain %q", pe.Msg, m)
				}
			}
		})
	}
}

// numbered shows a file with line numbers, for a failing test's message.
func numbered(s string) string {
	var b strings.Builder
	for i, l := range strings.Split(s, "\n") {
		fmt.Fprintf(&b, "%3d  %s\n", i+1, l)
	}
	return b.String()
}
