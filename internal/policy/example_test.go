package policy_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ssf-dev/ssf/internal/policy"
)

// A policy set that keeps one npm package out, decided at the deps gate.
func Example() {
	dir, err := os.MkdirTemp("", "policy")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	rule := `package ssf.deps

deny contains msg if {
	input.dependency.type == "npm"
	input.dependency.name == "event-stream"
	msg := sprintf("npm package %q is banned", [input.dependency.name])
}
`
	if err := os.WriteFile(filepath.Join(dir, "deps.rego"), []byte(rule), 0o644); err != nil {
		panic(err)
	}
	set, err := policy.Load(context.Background(), dir)
	if err != nil {
		fmt.Println(err) // FILE:LINE: message
		return
	}
	d, err := set.Evaluate(context.Background(), policy.Deps, policy.DepsInput{Dependency: policy.Dependency{
		Type: "npm", Name: "event-stream", Version: "3.3.6", PURL: "pkg:npm/event-stream@3.3.6", Digest: "sha512-…",
	}})
	if err != nil {
		fmt.Println("rejected: no decision:", err) // fail closed
		return
	}
	fmt.Println(d.Allowed(), d.Denials)
	// Output: false [npm package "event-stream" is banned]
}
