// Command local uses a module of its own source through a directory replacement, which needs nothing fetched.
package main

import (
	"fmt"

	"example.com/lib"
)

func main() { fmt.Println(lib.ID()) }
