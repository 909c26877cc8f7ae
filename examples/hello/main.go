// Command hello greets; ssf's demo builds it hermetically.
package main

import (
	"fmt"
	"os"
)

func main() {
	greeting := "hello"
	if len(os.Args) > 1 {
		greeting = os.Args[1]
	}
	fmt.Printf("%s from a hermetic build\n", greeting)
}
