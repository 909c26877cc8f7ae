package cli

import (
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/ssf-dev/ssf/internal/oci"
)

// TestPolicyTargetIsOneSpelling: ssf.publish's input.target names where the push goes one way, however the target
// was typed; a rule against a registry was passed by typing its host in capitals, with a trailing dot or :443, or
// Docker Hub by another of its names.
func TestPolicyTargetIsOneSpelling(t *testing.T) {
	for typed, want := range map[string]string{
		"registry.example.com/team/app:v1":      "registry.example.com/team/app:v1",
		"REGISTRY.Example.COM/team/app:v1":      "registry.example.com/team/app:v1",
		"registry.example.com./team/app:v1":     "registry.example.com/team/app:v1",
		"registry.example.com:443/team/app:v1":  "registry.example.com/team/app:v1",
		"registry.example.com.:443/team/app":    "registry.example.com/team/app",
		"registry.example.com:5000/team/app:v1": "registry.example.com:5000/team/app:v1",
		"docker.io/library/app:v1":              "index.docker.io/library/app:v1",
		"index.docker.io/library/app:v1":        "index.docker.io/library/app:v1",
		"registry-1.docker.io/library/app:v1":   "index.docker.io/library/app:v1",
		"localhost:443/app:v1":                  "localhost:443/app:v1", // plain http to loopback: 443 is not the default
		"127.0.0.1:5000/app":                    "127.0.0.1:5000/app",
	} {
		repo, tag, err := oci.ParseTarget(typed)
		if err != nil {
			t.Fatalf("%s: %v", typed, err)
		}
		if got := policyTarget(repo, tag); got != want {
			t.Errorf("%s: input.target %q, want %q", typed, got, want)
		}
	}
}

// TestPolicyFlagHelpNamesDIR: the help shows --policy DIR (a back-quoted `ssf init` in the usage showed as the
// flag's value: "--policy ssf init").
func TestPolicyFlagHelpNamesDIR(t *testing.T) {
	cmd := &cobra.Command{Use: "x"}
	addPolicyFlag(cmd)
	name, usage := pflag.UnquoteUsage(cmd.Flags().Lookup("policy"))
	if name != "DIR" || !strings.HasPrefix(usage, "directory DIR of the Rego policy set") {
		t.Errorf("--policy %s: %s", name, usage)
	}
}
