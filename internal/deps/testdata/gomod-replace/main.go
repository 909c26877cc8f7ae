// Command uuidtest prints a fixed UUID: a program with one third-party module, built offline from ingested modules.
package main

import (
	"fmt"

	"github.com/google/uuid"
)

func main() {
	fmt.Println(uuid.NewSHA1(uuid.NameSpaceURL, []byte("https://example.org/ssf")))
}
