// Command hello is a tiny Go program with third-party modules, built by the sbom tests to get a binary with
// real build info (a test binary carries no module list).
package main

import (
	"fmt"

	"github.com/google/uuid"
	"github.com/opencontainers/go-digest"
	"github.com/spf13/cobra"
)

func main() {
	cmd := &cobra.Command{Use: "hello"}
	fmt.Println(uuid.NewSHA1(uuid.NameSpaceURL, []byte("hello")), digest.FromString("hello"), cmd.Name())
}
