package sbom

import (
	"context"
	"crypto/sha256"
	"debug/buildinfo"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"

	"github.com/opencontainers/go-digest"

	"github.com/ssf-dev/ssf/internal/archive"
	"github.com/ssf-dev/ssf/internal/deps"
)

// Bounds on what a binary's build info may cost: a real one is a few KiB to read after the data section's
// .go.buildinfo header is found, names at most a few thousand modules and holds tens of KiB of text. Variables,
// so tests can lower them.
var (
	readBudget int64 = 256 << 20 // bytes read from the file by debug/buildinfo, the search for its header included
	// maxModules: the largest real Go programs link one or two thousand modules. At 20000 the SPDX bundle alone
	// was 34 MB, more than ssf sbom and a registry fetch read (verify.MaxBundleSize); at 5000 it is under half.
	maxModules = 5000
	// maxInfoText bounds the text build info holds (module paths, versions, sums, settings). A real binary's is
	// tens of KiB; each byte of it is written several times into each document and grows again as the
	// statement's predicate, so 18 MiB of module paths already cost the control plane a GiB of memory.
	maxInfoText = 1 << 20
)

// readBuildInfo returns the Go build info of the file at path, or nil when it has none (not a Go binary, or
// larger than MaxBinarySize); note says why build info that exists was not used. The file must be a regular file
// whose sha256 is want: the SBOM describes those bytes.
func readBuildInfo(ctx context.Context, path string, want digest.Digest) (info *buildinfo.BuildInfo, note string, err error) {
	// O_NOFOLLOW: the control plane's copy is a regular file; a symlink here would describe other bytes.
	// O_NONBLOCK: a fifo swapped in must not block the open; it is refused below as not regular.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, "", fmt.Errorf("opening the output %q: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, "", fmt.Errorf("opening the output %q: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, "", fmt.Errorf("output %q is not a regular file (%s)", path, fi.Mode().Type())
	}
	if fi.Size() > MaxBinarySize {
		return nil, fmt.Sprintf("build info not read: the output is larger than %d bytes", int64(MaxBinarySize)), nil
	}
	h := sha256.New()
	if _, err := archive.CopyContext(ctx, h, io.NewSectionReader(f, 0, fi.Size()), make([]byte, 256<<10)); err != nil {
		return nil, "", fmt.Errorf("hashing the output %q: %w", path, err)
	}
	if got := digest.NewDigest(digest.SHA256, h); got != want {
		return nil, "", fmt.Errorf("output %q hashes to %s, not to its recorded digest %s: it changed after it was hashed", path, got, want)
	}
	// Read only the size hashed (a file that grows now is not read past what was checked), and at most
	// readBudget bytes in all: debug/buildinfo allocates as it reads, so this bounds its memory too.
	r := &budgetReaderAt{ctx: ctx, r: io.NewSectionReader(f, 0, fi.Size()), left: readBudget}
	info, err = buildinfo.Read(r)
	switch {
	case ctx.Err() != nil:
		return nil, "", ctx.Err()
	case r.left < 0:
		return nil, fmt.Sprintf("build info not read: reading it took more than %d bytes", readBudget), nil
	case err != nil:
		return nil, "", nil // not a Go binary (or one without build info): described as a file
	case len(info.Deps) > maxModules:
		return nil, fmt.Sprintf("build info not used: it names %d modules, more than %d", len(info.Deps), maxModules), nil
	case infoText(info) > maxInfoText:
		return nil, fmt.Sprintf("build info not used: it holds %d bytes of module names and settings, more than %d", infoText(info), maxInfoText), nil
	}
	return info, "", nil
}

// infoText is the number of bytes of text in info that the documents would carry.
func infoText(info *buildinfo.BuildInfo) int {
	n := len(info.GoVersion) + len(info.Path)
	mod := func(m *debug.Module) {
		for ; m != nil; m = m.Replace {
			n += len(m.Path) + len(m.Version) + len(m.Sum)
		}
	}
	mod(&info.Main)
	for _, d := range info.Deps {
		mod(d)
	}
	for _, s := range info.Settings {
		n += len(s.Key) + len(s.Value)
	}
	return n
}

// budgetReaderAt fails every read once left (bytes still allowed) is spent, and when ctx is cancelled.
type budgetReaderAt struct {
	ctx  context.Context
	r    io.ReaderAt
	left int64
}

func (b *budgetReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if err := b.ctx.Err(); err != nil {
		return 0, err
	}
	b.left -= int64(len(p))
	if b.left < 0 {
		return 0, errors.New("build info read budget spent")
	}
	return b.r.ReadAt(p, off)
}

// fromBuildInfo describes a Go binary: its main module and every module its build info names, each checked
// against the ingested Go modules.
func (m *model) fromBuildInfo(info *buildinfo.BuildInfo) {
	m.goBinary = true
	m.goVersion = info.GoVersion
	m.outProps = append(m.outProps, property{PropGoVersion, info.GoVersion})
	settings := slices.Clone(info.Settings)
	slices.SortStableFunc(settings, func(a, b debug.BuildSetting) int { return strings.Compare(a.Key, b.Key) })
	for _, s := range settings {
		m.outProps = append(m.outProps, property{PropGoBuildPrefix + s.Key, s.Value})
	}
	if info.Main.Path != "" {
		c := &component{kind: KindGoModule, name: info.Main.Path, version: info.Main.Version,
			purl: purlGolang(info.Main.Path, info.Main.Version), main: true,
			props: []property{{PropEvidence, EvidenceBuildInfo}, {PropMainModule, "true"}}}
		if info.Main.Sum != "" {
			c.props = append(c.props, property{PropGoSum, info.Main.Sum})
		}
		m.comps = append(m.comps, c)
	}

	ingested := map[string][]deps.Dependency{}
	for _, d := range m.in.Deps {
		if d.Kind == deps.Gomod {
			k := d.Name + "@" + d.Version
			ingested[k] = append(ingested[k], d)
		}
	}
	for _, dep := range info.Deps {
		if dep == nil {
			continue
		}
		eff := dep
		c := &component{kind: KindGoModule, props: []property{{PropEvidence, EvidenceBuildInfo}}}
		if dep.Replace != nil && dep.Replace.Version == "" {
			// Replaced by a directory: code from the build's own files (the source, or another task's outputs),
			// like the main module's, not a module to fetch; nothing to compare with what was ingested.
			c.name, c.purl = dep.Path, purlGolang(dep.Path, "")
			c.props = append(c.props, property{PropGoReplacedByDirectory, dep.Replace.Path})
			m.comps = append(m.comps, c)
			continue
		}
		if dep.Replace != nil {
			eff = dep.Replace
			c.props = append(c.props, property{"ssf:go:replaces", dep.Path + "@" + dep.Version})
		}
		c.name, c.version = eff.Path, eff.Version
		c.purl = purlGolang(eff.Path, eff.Version)
		if eff.Sum != "" {
			c.props = append(c.props, property{PropGoSum, eff.Sum})
		}
		ok, reason, d := checkIngested(eff, ingested[eff.Path+"@"+eff.Version])
		c.ingested = &ok
		c.reason = reason
		if ok {
			c.sha256 = d.Digest.Encoded()
			c.download = d.URL
		}
		m.comps = append(m.comps, c)
	}
}

// checkIngested decides whether the module the binary names is one the control plane ingested for the build.
func checkIngested(mod *debug.Module, found []deps.Dependency) (bool, string, deps.Dependency) {
	if mod.Version == "" {
		return false, fmt.Sprintf("replaced by the directory %q, not a module the control plane fetched", mod.Path), deps.Dependency{}
	}
	if len(found) == 0 {
		if mod.Sum == "" {
			// go build -mod=vendor records no sums: the code came from the source's vendor directory, which the
			// control plane took as source but did not check against go.sum.
			return false, "not among the modules ingested for this build, and the binary records no go.sum hash for it (vendored in the source?)", deps.Dependency{}
		}
		return false, "not among the modules ingested for this build (no gomod dependency declared for it, or missing from go.sum)", deps.Dependency{}
	}
	var modOnly bool
	for _, d := range found {
		if !d.ModOnly && mod.Sum != "" && d.Pin == mod.Sum {
			return true, "", d
		}
	}
	for _, d := range found {
		if d.ModOnly {
			modOnly = true
			continue
		}
		if mod.Sum == "" {
			// Path and version alone do not say the code is the module that was verified: go build -mod=vendor
			// (the default when the source has vendor/) compiles whatever vendor/ holds and records no hash.
			return false, fmt.Sprintf("the binary records no go.sum hash for it, so its code need not be the module ingested with %s (vendored in the source?)", d.Pin), deps.Dependency{}
		}
		return false, fmt.Sprintf("the binary says %s, the lock file pinned %s", mod.Sum, d.Pin), d
	}
	if modOnly {
		return false, "only its go.mod was ingested (for the module graph), not its code", deps.Dependency{}
	}
	return false, "not ingested", deps.Dependency{}
}
