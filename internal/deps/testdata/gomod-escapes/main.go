// Command escapes uses a module with capital letters in its path (escaped as !burnt!sushi in the proxy's URLs and
// files) and a +incompatible version (v3 of a module without a go.mod), the two cases of the proxy protocol's
// escaping.
package main

import (
	"fmt"

	"github.com/BurntSushi/toml"
	jwt "github.com/dgrijalva/jwt-go"
)

func main() {
	var v struct{ A int }
	_, err := toml.Decode("A = 1", &v)
	fmt.Println(v.A, err, jwt.SigningMethodHS256.Alg())
}
