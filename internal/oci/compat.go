package oci

import "github.com/ssf-dev/ssf/internal/archive"

// Forwarders for code not yet moved to package archive, where the tar code now lives. They keep every commit
// building while the packages that write and extract trees switch their imports; remove them once nothing uses
// them (go build ./... then says where).
var (
	WriteTree  = archive.WriteTree
	WriteFiles = archive.WriteFiles
	Extract    = archive.Extract
)

// ExtractOptions is archive.ExtractOptions.
type ExtractOptions = archive.ExtractOptions

// TreeStats is archive.TreeStats.
type TreeStats = archive.TreeStats
