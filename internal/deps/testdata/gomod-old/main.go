// Command unpruned uses testify v1.7.0, whose go.mod says go 1.13: the go command loads its requirements' go.mod
// files transitively (an unpruned module graph below it).
package main

import (
	"fmt"

	"github.com/stretchr/testify/assert"
)

func main() {
	fmt.Println(assert.ObjectsAreEqual([]int{1, 2}, []int{1, 2}))
}
