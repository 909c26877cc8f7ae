// Command uuid prints a new random UUID and the SHA-1 name-based UUID of its argument: a small program with one
// third-party module (github.com/google/uuid), built hermetically by examples/uuid/ssf.yaml.
package main

import (
	"fmt"
	"os"

	"github.com/google/uuid"
)

func main() {
	name := "ssf.dev"
	if len(os.Args) > 1 {
		name = os.Args[1]
	}
	fmt.Printf("random  %s\n", uuid.New())
	fmt.Printf("name    %s  (SHA-1 of %q in the URL namespace)\n", uuid.NewSHA1(uuid.NameSpaceURL, []byte(name)), name)
}
