module example.com/escapes

go 1.22

require (
	github.com/BurntSushi/toml v1.4.0
	github.com/dgrijalva/jwt-go v3.2.0+incompatible
)
