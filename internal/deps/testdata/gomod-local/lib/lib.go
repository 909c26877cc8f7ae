// Package lib is a module replaced by a directory of the source.
package lib

import "github.com/google/uuid"

// ID is a fixed UUID.
func ID() string { return uuid.NewSHA1(uuid.NameSpaceURL, []byte("lib")).String() }
