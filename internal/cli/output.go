package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"

	"github.com/spf13/cobra"
)

// outputFormat is the value of --output: how a command prints its result on stdout. The schema of every JSON
// document is in docs/cli-json.md; a field renamed or removed there breaks scripts, so only add fields.
type outputFormat string

const (
	outputText outputFormat = "text"
	outputJSON outputFormat = "json"
)

func (o *outputFormat) String() string { return string(*o) }
func (o *outputFormat) Type() string   { return "text|json" }

// Set refuses anything but text and json; the flag error becomes a usage error (exit 2) through the root's
// flag error function.
func (o *outputFormat) Set(s string) error {
	switch outputFormat(s) {
	case outputText, outputJSON:
		*o = outputFormat(s)
		return nil
	}
	return fmt.Errorf("want text or json")
}

// addOutputFlag gives cmd the --output flag. Main reads the flag back by name to print a failure as JSON.
func addOutputFlag(cmd *cobra.Command) *outputFormat {
	o := outputText
	cmd.Flags().Var(&o, "output", "how the result is printed on stdout: text, or json (one object; schema in docs/cli-json.md)")
	return &o
}

// wantsJSON reports whether cmd was run with --output json, so that a failure is printed as JSON too.
func wantsJSON(cmd *cobra.Command) bool {
	if cmd == nil {
		return false
	}
	f := cmd.Flags().Lookup("output")
	return f != nil && f.Value.String() == string(outputJSON)
}

// writeJSON prints v as the command's one JSON document: a single object on one line, newline-terminated.
// HTML escaping is off: "<none>" must stay readable to people who look at it. Strings can hold what a registry,
// a dependency server or a build record said, and encoding/json leaves C1 controls (U+009B is CSI to xterm) and
// bidi overrides raw: terminalSafeJSON escapes them, so the document decodes to the same values and a terminal
// showing it acts on nothing.
func writeJSON(w io.Writer, v any) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("writing the JSON result: %w", err)
	}
	if _, err := w.Write(terminalSafeJSON(buf.Bytes())); err != nil {
		return fmt.Errorf("writing the JSON result: %w", err)
	}
	return nil
}

// jsonError is what stdout holds when a command run with --output json fails, so that stdout always parses.
type jsonError struct {
	Error    string `json:"error"`
	Hint     string `json:"hint,omitempty"`
	ExitCode int    `json:"exitCode"`
	// Workspace is where ssf build --keep-workspace kept the failed task's files; absent otherwise.
	Workspace string `json:"workspace,omitempty"`
}
