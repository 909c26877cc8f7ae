package deps

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	neturl "net/url"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"
	"golang.org/x/mod/sumdb/dirhash"
	modzip "golang.org/x/mod/zip"
)

// How ingestion mirrors the go command (cmd/go's modload, for `go mod download` with no arguments):
//
//   - go.mod files: the go command loads the go.mod of every module the main module requires, and, below a module
//     whose go.mod says go < 1.17 (or has no go line: "unpruned"), the go.mod of every module it requires,
//     transitively. A main module at go < 1.17 is unpruned itself, so its whole graph is loaded. On top of that,
//     every "/go.mod" line of go.sum is fetched: `go mod tidy` keeps exactly the go.mod checksums the go command
//     may need, so the tree holds every go.mod it could ask for.
//   - zips: those of the modules the main module requires (go >= 1.17: go.mod lists every module that provides a
//     package), or, for a main module at go < 1.17, of every module of the build list (the highest version of each
//     path in the graph) that go.sum pins.
//
// Every file is checked against go.sum's h1: hash; a needed file go.sum has no hash for is refused. go.sum is the
// lock: it is never extended here.

// gomod ingests the Go modules that go.mod and go.sum at s.Path pin, and lays them out as a GOPROXY file tree at
// tree/GoProxyDir.
func (f *fetcher) gomod(ctx context.Context, src fs.FS, s Spec, tree string) ([]Dependency, error) {
	dir := s.Path
	if dir == "" {
		dir = "."
	}
	modName, sumName := path.Join(dir, "go.mod"), path.Join(dir, "go.sum")
	modData, err := fs.ReadFile(src, modName)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, inputErrorf("gomod dependencies at %q: the source has no %s; point path at the directory that holds go.mod and go.sum", dir, modName)
	} else if err != nil {
		return nil, inputErrorf("reading %s: %v", modName, err) // the source's own files: a symlink, say
	}
	mainMod, err := modfile.Parse(modName, modData, nil)
	if err != nil {
		return nil, &InputError{Err: fmt.Errorf("parsing go.mod: %w", err)}
	}
	if mainMod.Module == nil {
		return nil, inputErrorf("%s: no module line; a go.mod starts with `module PATH`", modName)
	}
	sumData, err := fs.ReadFile(src, sumName)
	if errors.Is(err, fs.ErrNotExist) {
		if len(mainMod.Require) > 0 {
			return nil, inputErrorf("%s requires modules but the source has no %s; go.sum is the lock: run `go mod tidy` outside the factory and commit go.sum", modName, sumName)
		}
		sumData = nil
	} else if err != nil {
		return nil, inputErrorf("reading %s: %v", sumName, err)
	}
	sum, err := parseGoSum(sumName, sumData)
	if err != nil {
		return nil, err
	}
	proxy, err := goProxyURL(f.opts.GoProxy)
	if err != nil && f.opts.GoProxySource != "" {
		err = inputErrorf("%v (the setting comes from %s)", err, f.opts.GoProxySource)
	}
	if err != nil {
		return nil, err
	}
	g := &goIngest{
		f: f, src: src, dir: dir, modName: modName, sumName: sumName,
		main: mainMod, sum: sum, proxy: proxy,
		calls:     map[goFile]*goCall{},
		verifying: make(chan struct{}, runtime.GOMAXPROCS(0)),
	}
	return g.run(ctx, tree)
}

// goProxyURL picks the first http(s) entry of a GOPROXY-style list.
func goProxyURL(list string) (string, error) {
	for _, e := range strings.FieldsFunc(list, func(r rune) bool { return r == ',' || r == '|' }) {
		e = strings.TrimSpace(e)
		if e == "off" {
			break
		}
		if strings.HasPrefix(e, "https://") || strings.HasPrefix(e, "http://") {
			return strings.TrimRight(e, "/"), nil
		}
	}
	// The list is quoted without the user information its entries may carry (a proxy's token).
	shown := strings.FieldsFunc(list, func(r rune) bool { return r == ',' })
	for i, e := range shown {
		shown[i] = redactURL(strings.TrimSpace(e))
	}
	return "", inputErrorf("gomod dependencies need a Go module proxy, and the GOPROXY setting %q names no http(s) one (ssf never fetches modules directly from version control); set `goproxy` in config.yaml, e.g. to https://proxy.golang.org", strings.Join(shown, ","))
}

// goSum is a parsed go.sum: the h1: hash of each module's zip and of each module's go.mod.
type goSum struct {
	zip map[module.Version]sumLine
	mod map[module.Version]sumLine
}

type sumLine struct {
	h1   string // "h1:<base64>"
	line int
}

// emptyGoModHash is the hash of an empty go.mod that old go commands wrote by mistake; the go command skips it.
const emptyGoModHash = "h1:G7mAYYxgmS0lVkHyy2hEOLQCFB0DlQFTMLWggykrydY="

// parseGoSum reads go.sum strictly: each non-blank line is "MODULE VERSION h1:HASH" or "MODULE VERSION/go.mod
// h1:HASH", with a valid module path, a canonical version and a base64 SHA-256. name is for messages.
func parseGoSum(name string, data []byte) (*goSum, error) {
	s := &goSum{zip: map[module.Version]sumLine{}, mod: map[module.Version]sumLine{}}
	const want = "go.sum lines are `MODULE VERSION h1:HASH` or `MODULE VERSION/go.mod h1:HASH`; regenerate go.sum with `go mod tidy` outside the factory"
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(lines) > maxGoSumLines {
		return nil, inputErrorf("%s has %d lines, more than the %d ssf reads; is it the go.sum of one module?", name, len(lines), maxGoSumLines)
	}
	for i, line := range lines {
		n := i + 1
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		bad := func(format string, args ...any) error {
			return inputErrorf("%s:%d: %s; %s", name, n, fmt.Sprintf(format, args...), want)
		}
		if len(fields) != 3 {
			return nil, bad("%d fields instead of 3", len(fields))
		}
		p, v, h := fields[0], fields[1], fields[2]
		table, isMod := s.zip, strings.HasSuffix(v, "/go.mod")
		if isMod {
			v, table = strings.TrimSuffix(v, "/go.mod"), s.mod
		}
		if err := module.Check(p, v); err != nil {
			return nil, bad("%v", err)
		}
		if module.CanonicalVersion(v) != v {
			return nil, bad("version %q is not canonical", v)
		}
		if !validH1(h) {
			return nil, bad("%q is not an h1: hash (h1: and the base64 of 32 bytes)", h)
		}
		if isMod && h == emptyGoModHash {
			continue
		}
		m := module.Version{Path: p, Version: v}
		if prev, ok := table[m]; ok && prev.h1 != h {
			return nil, bad("a second, different hash for %s (line %d has %s)", fields[0]+" "+fields[1], prev.line, prev.h1)
		} else if ok {
			continue
		}
		table[m] = sumLine{h1: h, line: n}
	}
	return s, nil
}

func validH1(h string) bool {
	b64, ok := strings.CutPrefix(h, "h1:")
	if !ok || len(b64) != 44 {
		return false
	}
	raw, err := base64.StdEncoding.Strict().DecodeString(b64)
	return err == nil && len(raw) == 32
}

// h1Key is the cache key of a file pinned by h1 (the key names the pin, so a cache hit is checked against it).
func h1Key(h1, ext string) string {
	raw, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(h1, "h1:"))
	return "gomod/h1/" + hex.EncodeToString(raw) + "." + ext
}

// goFileKey is the cache key of file, pinned by h1. A key must name everything its check depends on, since a cache
// hit whose bytes are recorded as checked is not checked again: a go.mod's check is its h1 alone, but a zip's is
// also the module zip rules for that module version (every file under "path@version/"). Keyed by the h1 alone, a
// go.sum pinning module b to the h1 of module a's zip would get a's zip, checked as a's, accepted as b's.
func goFileKey(file goFile, h1 string) string {
	if file.ext != "zip" {
		return h1Key(h1, file.ext)
	}
	sum := sha256.Sum256([]byte(file.m.String()))
	return strings.TrimSuffix(h1Key(h1, "zip"), ".zip") + "." + hex.EncodeToString(sum[:16]) + ".zip"
}

// goModHash is go.sum's hash of a go.mod file, as the go command computes it: dirhash's Hash1 over one file named
// "go.mod".
func goModHash(data []byte) (string, error) {
	return dirhash.Hash1([]string{"go.mod"}, func(string) (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	})
}

// maxZipEntries bounds the files of one module zip (the module zip rules bound only their sizes): reading a zip's
// directory costs memory per entry. The largest modules people depend on have tens of thousands of files. A
// variable, so that a test can lower it.
var maxZipEntries uint64 = 200000

// zipEntries reads the number of entries a zip file declares, from its end of central directory record (and the
// zip64 one it points to), without reading the directory itself.
func zipEntries(p string) (uint64, error) {
	f, err := os.Open(p)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	// The record is 22 bytes plus a comment of at most 65535, at the end of the file.
	n := min(fi.Size(), 22+65535)
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, fi.Size()-n); err != nil {
		return 0, err
	}
	i := bytes.LastIndex(buf, []byte("PK\x05\x06"))
	if i < 0 || len(buf)-i < 22 {
		return 0, errors.New("no end of central directory record")
	}
	entries := uint64(binary.LittleEndian.Uint16(buf[i+10:]))
	if entries != 0xffff {
		return entries, nil
	}
	// Zip64: a locator (20 bytes) precedes the record and gives the zip64 record's offset.
	loc := i - 20
	if loc < 0 || !bytes.Equal(buf[loc:loc+4], []byte("PK\x06\x07")) {
		return 0, errors.New("no zip64 end of central directory locator")
	}
	var rec [40]byte
	if _, err := f.ReadAt(rec[:], int64(binary.LittleEndian.Uint64(buf[loc+8:]))); err != nil {
		return 0, err
	}
	if !bytes.Equal(rec[:4], []byte("PK\x06\x06")) {
		return 0, errors.New("no zip64 end of central directory record")
	}
	return binary.LittleEndian.Uint64(rec[32:]), nil
}

// maxZipInMemory bounds the module zips hashZip reads into memory; larger ones are read from the file.
const maxZipInMemory = 64 << 20

// hashZip is dirhash.HashZip(p, dirhash.Hash1), go.sum's h1 of a module zip: the SHA-256 of a summary that lists,
// sorted by name, each file's name and the SHA-256 of its content. It is faster: the zip is read into memory once
// (dirhash's reader asks the file system for every 4 KiB it inflates), and its files are inflated and hashed on
// every CPU at once, so one large module does not keep a warm ingestion waiting on one CPU. Verifying the cache
// again on every build is mostly this. The tests check it against dirhash.HashZip.
func hashZip(p string) (string, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return "", err
	}
	if fi.Size() > maxZipInMemory {
		return dirhash.HashZip(p, dirhash.Hash1)
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return "", err
	}
	z, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return "", err
	}
	files := slices.Clone(z.File)
	slices.SortStableFunc(files, func(a, b *zip.File) int { return strings.Compare(a.Name, b.Name) })
	sums := make([][sha256.Size]byte, len(files))
	errs := make([]error, len(files))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(files)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 32<<10)
			for {
				i := int(next.Add(1) - 1)
				if i >= len(files) {
					return
				}
				r, err := files[i].Open()
				if err != nil {
					errs[i] = err
					continue
				}
				h := sha256.New()
				_, errs[i] = io.CopyBuffer(h, r, buf)
				r.Close()
				h.Sum(sums[i][:0])
			}
		}()
	}
	wg.Wait()
	summary := sha256.New()
	for i, f := range files {
		if errs[i] != nil {
			return "", fmt.Errorf("reading %s: %w", f.Name, errs[i])
		}
		if strings.Contains(f.Name, "\n") {
			return "", fmt.Errorf("a file name with a newline: %q", f.Name)
		}
		fmt.Fprintf(summary, "%x  %s\n", sums[i], f.Name)
	}
	return "h1:" + base64.StdEncoding.EncodeToString(summary.Sum(nil)), nil
}

// goFile is one file fetched from the proxy: a module version's "mod" or "zip".
type goFile struct {
	m   module.Version
	ext string
}

// goCall is one fetch, shared by everyone who needs that file.
type goCall struct {
	// needed is false for a go.mod only go.sum names (none of the graph's loading asked for it): one the proxy
	// does not have (404, 410) is left out instead of failing the build, as the go command could not fetch it
	// either. Guarded by goIngest.mu.
	needed bool
	done   chan struct{}
	c      cached
	url    string
	pin    string
	err    error
}

// goIngest is the ingestion of one gomod Spec.
type goIngest struct {
	f                *fetcher
	src              fs.FS
	dir              string
	modName, sumName string
	main             *modfile.File
	sum              *goSum
	proxy            string

	// verifying bounds the zip checks at once: they are CPU-bound (inflating every file), and a cache hit takes
	// no download slot.
	verifying chan struct{}

	mu      sync.Mutex
	calls   map[goFile]*goCall
	pending []goFile // started but not yet taken by a worker
	workers int      // running workers, at most maxGoWorkers
}

// maxGoWorkers bounds the fetches of one gomod Spec in progress at once (each a goroutine waiting for a download
// slot or a zip check), so that a go.sum of many lines costs a queue entry per line, not a goroutine.
const maxGoWorkers = 4 * DefaultConcurrency

// maxGoSumLines bounds go.sum: every "/go.mod" line is fetched, and a lock file must not turn into an unbounded
// number of requests. The go.sum of a large project (Kubernetes) has a few thousand lines.
const maxGoSumLines = 50000

func (g *goIngest) run(ctx context.Context, tree string) ([]Dependency, error) {
	mainPruned := goVersionPruned(g.main)
	var roots []module.Version
	for _, r := range g.main.Require {
		if !g.excluded(r.Mod) {
			roots = append(roots, r.Mod)
		}
	}
	// Every go.mod go.sum pins, fetched while the graph is walked.
	for m := range g.sum.mod {
		g.call(ctx, goFile{m, "mod"}, false)
	}
	if mainPruned {
		// The zips are those of go.mod's requirements; start them at once.
		for _, r := range roots {
			if t, local := g.replace(r); !local {
				g.start(ctx, goFile{t, "zip"})
			}
		}
	}
	graph, err := g.loadGraph(ctx, roots, mainPruned)
	if err != nil {
		g.wait()
		return nil, err
	}
	if !mainPruned {
		listed := map[string]bool{}
		for _, r := range roots {
			listed[r.Path] = true
		}
		for _, m := range buildList(roots, graph, g.main.Module.Mod.Path) {
			t, local := g.replace(m)
			if local {
				continue
			}
			if _, ok := g.sum.zip[t]; ok || listed[m.Path] {
				g.start(ctx, goFile{t, "zip"})
			}
		}
	}
	files, err := g.wait()
	if err != nil {
		return nil, err
	}
	return g.layOut(tree, files)
}

// goVersionPruned says whether a go.mod's go line is 1.17 or higher, where the go command prunes the module graph
// below it; a go.mod without a go line counts as go 1.16.
func goVersionPruned(f *modfile.File) bool {
	if f == nil || f.Go == nil {
		return false
	}
	major, rest, _ := strings.Cut(f.Go.Version, ".")
	if major != "1" {
		n, err := strconv.Atoi(major)
		return err == nil && n > 1
	}
	end := 0
	for end < len(rest) && rest[end] >= '0' && rest[end] <= '9' {
		end++
	}
	minor, err := strconv.Atoi(rest[:end])
	return err == nil && minor >= 17
}

// excluded says whether the main module's go.mod excludes m; the go command drops requirements on it.
func (g *goIngest) excluded(m module.Version) bool {
	for _, x := range g.main.Exclude {
		if x.Mod == m {
			return true
		}
	}
	return false
}

// replace applies the main module's replace directives to m: the module version that is fetched instead, or
// local=true for a replacement by a directory (nothing to fetch). An exact-version replacement wins over one for
// every version.
func (g *goIngest) replace(m module.Version) (t module.Version, local bool) {
	var rep *modfile.Replace
	for _, r := range g.main.Replace {
		if r.Old.Path != m.Path {
			continue
		}
		if r.Old.Version == m.Version {
			rep = r
			break
		}
		if r.Old.Version == "" {
			rep = r
		}
	}
	if rep == nil {
		return m, false
	}
	if rep.New.Version == "" {
		return rep.New, true
	}
	return rep.New, false
}

// summary is what the graph needs of a module's go.mod.
type summary struct {
	pruned  bool
	require []module.Version
}

// loadGraph loads the go.mod files the go command loads for this main module (see the comment at the top), level
// by level, each level's downloads at once. It returns every loaded module's summary.
func (g *goIngest) loadGraph(ctx context.Context, roots []module.Version, mainPruned bool) (map[module.Version]*summary, error) {
	type item struct {
		m        module.Version
		unpruned bool
	}
	seen := map[item]bool{}
	sums := map[module.Version]*summary{}
	var level []item
	for _, r := range roots {
		it := item{r, !mainPruned}
		if !seen[it] {
			seen[it] = true
			level = append(level, it)
		}
	}
	for len(level) > 0 {
		var load []module.Version
		for _, it := range level {
			if _, ok := sums[it.m]; !ok {
				load = append(load, it.m)
				sums[it.m] = nil
				if t, local := g.replace(it.m); !local {
					g.start(ctx, goFile{t, "mod"})
				}
			}
		}
		module.Sort(load)
		for _, m := range load {
			s, err := g.summary(ctx, m)
			if err != nil {
				return nil, err
			}
			sums[m] = s
		}
		var next []item
		for _, it := range level {
			s := sums[it.m]
			if !it.unpruned && s.pruned {
				continue
			}
			for _, r := range s.require {
				ni := item{r, true}
				if !seen[ni] && r.Path != g.main.Module.Mod.Path {
					seen[ni] = true
					next = append(next, ni)
				}
			}
		}
		level = next
	}
	return sums, nil
}

// summary reads m's go.mod: that of its replacement, from the proxy or from a directory of the source.
func (g *goIngest) summary(ctx context.Context, m module.Version) (*summary, error) {
	t, local := g.replace(m)
	var name string
	var data []byte
	if local {
		dir := t.Path
		if filepath.IsAbs(dir) || strings.Contains(dir, "\\") {
			return nil, inputErrorf("%s: replace %s => %s: a directory outside the source, which a build cannot see; replace it by a directory of the source or by a module version", g.modName, m, dir)
		}
		name = path.Join(g.dir, dir, "go.mod")
		if !fs.ValidPath(name) {
			return nil, inputErrorf("%s: replace %s => %s: a directory outside the source, which a build cannot see; replace it by a directory of the source or by a module version", g.modName, m, dir)
		}
		var err error
		data, err = fs.ReadFile(g.src, name)
		if err != nil {
			return nil, inputErrorf("%s: replace %s => %s: reading its go.mod: %v", g.modName, m, dir, err)
		}
	} else {
		c := g.call(ctx, goFile{t, "mod"}, true)
		<-c.done
		if c.err != nil {
			return nil, c.err
		}
		var err error
		data, err = os.ReadFile(c.c.Path)
		if err != nil {
			return nil, err
		}
		name = t.String() + "/go.mod"
	}
	// The go command reads a dependency's go.mod leniently (only module, go and require matter).
	f, err := modfile.ParseLax(name, data, nil)
	if err != nil {
		return nil, fmt.Errorf("parsing the go.mod of %s: %w", t, err)
	}
	s := &summary{pruned: goVersionPruned(f)}
	for _, r := range f.Require {
		if !g.excluded(r.Mod) {
			s.require = append(s.require, r.Mod)
		}
	}
	return s, nil
}

// buildList is minimal version selection over a fully loaded graph: the highest version of each module path.
func buildList(roots []module.Version, graph map[module.Version]*summary, mainPath string) []module.Version {
	sel := map[string]string{}
	add := func(m module.Version) {
		if m.Path == mainPath || m.Version == "none" {
			return
		}
		if v, ok := sel[m.Path]; !ok || semver.Compare(m.Version, v) > 0 {
			sel[m.Path] = m.Version
		}
	}
	for _, r := range roots {
		add(r)
	}
	for m, s := range graph {
		add(m)
		if s != nil {
			for _, r := range s.require {
				add(r)
			}
		}
	}
	list := make([]module.Version, 0, len(sel))
	for p, v := range sel {
		list = append(list, module.Version{Path: p, Version: v})
	}
	module.Sort(list)
	return list
}

// call returns the fetch of file, starting it when nobody has. needed says the graph needs the file.
func (g *goIngest) call(ctx context.Context, file goFile, needed bool) *goCall {
	g.mu.Lock()
	defer g.mu.Unlock()
	if c, ok := g.calls[file]; ok {
		c.needed = c.needed || needed
		return c
	}
	c := &goCall{needed: needed, done: make(chan struct{})}
	g.calls[file] = c
	g.f.progress.expect(1)
	g.pending = append(g.pending, file)
	if g.workers < maxGoWorkers {
		g.workers++
		go g.work(ctx)
	}
	return c
}

// work fetches the pending files, one at a time, until none is left.
func (g *goIngest) work(ctx context.Context) {
	for {
		g.mu.Lock()
		if len(g.pending) == 0 {
			g.workers--
			g.mu.Unlock()
			return
		}
		file := g.pending[0]
		g.pending = g.pending[1:]
		c := g.calls[file]
		g.mu.Unlock()
		c.c, c.url, c.pin, c.err = g.fetch(ctx, file)
		close(c.done)
	}
}

func (g *goIngest) start(ctx context.Context, file goFile) { g.call(ctx, file, true) }

// wait waits for every fetch started and returns the files fetched, sorted; the error is that of the first failed
// one in that order, so the message does not depend on timing.
func (g *goIngest) wait() ([]goFile, error) {
	g.mu.Lock()
	all := make([]goFile, 0, len(g.calls))
	calls := make(map[goFile]*goCall, len(g.calls))
	for file, c := range g.calls {
		all = append(all, file)
		calls[file] = c
	}
	g.mu.Unlock()
	sort.Slice(all, func(i, j int) bool { return goFileLess(all[i], all[j]) })
	var first error
	var files []goFile
	for _, file := range all {
		c := calls[file]
		<-c.done
		g.mu.Lock()
		needed := c.needed
		g.mu.Unlock()
		switch {
		case c.err == nil:
			files = append(files, file)
		case !needed && notOnProxy(c.err):
		case first == nil:
			first = c.err
		}
	}
	return files, first
}

// notOnProxy says whether err is the proxy saying it does not have the file (404 or 410, the GOPROXY protocol's
// "not found").
func notOnProxy(err error) bool {
	var fe *FetchError
	return errors.As(err, &fe) && (strings.HasPrefix(fe.Status, "404") || strings.HasPrefix(fe.Status, "410"))
}

func goFileLess(a, b goFile) bool {
	if a.m != b.m {
		if a.m.Path != b.m.Path {
			return a.m.Path < b.m.Path
		}
		return semver.Compare(a.m.Version, b.m.Version) < 0 || (semver.Compare(a.m.Version, b.m.Version) == 0 && a.m.Version < b.m.Version)
	}
	return a.ext < b.ext
}

// fetch gets one file of a module version from the cache or the proxy, checked against go.sum.
func (g *goIngest) fetch(ctx context.Context, file goFile) (cached, string, string, error) {
	m := file.m
	table, what := g.sum.zip, "zip"
	if file.ext == "mod" {
		table, what = g.sum.mod, "go.mod"
	}
	pin, ok := table[m]
	if !ok {
		return cached{}, "", "", inputErrorf("module %s is needed to build %s but %s has no hash for its %s; go.sum is the lock: run `go mod tidy` (or `go mod download %s`) outside the factory and commit go.sum", m, g.main.Module.Mod.Path, g.sumName, what, m)
	}
	ep, err := module.EscapePath(m.Path)
	if err != nil {
		return cached{}, "", "", inputErrorf("%s:%d: %v", g.sumName, pin.line, err)
	}
	ev, err := module.EscapeVersion(m.Version)
	if err != nil {
		return cached{}, "", "", inputErrorf("%s:%d: %v", g.sumName, pin.line, err)
	}
	url := g.proxy + "/" + ep + "/@v/" + ev + "." + file.ext
	label := fmt.Sprintf("module %s (%s)", m, what)
	var check func(p string) error
	if file.ext == "mod" {
		check = func(p string) error {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			got, err := goModHash(data)
			if err != nil {
				return err
			}
			if got != pin.h1 {
				return &MismatchError{What: label, Pinned: fmt.Sprintf("%s:%d", g.sumName, pin.line), Want: pin.h1, URL: redactURL(url), Got: got}
			}
			return nil
		}
	} else {
		check = func(p string) error {
			// CPU and memory: at most one check per CPU at once.
			g.verifying <- struct{}{}
			defer func() { <-g.verifying }()
			// CheckZip holds the zip's whole directory in memory: bound its entries first, from the zip's end
			// record alone.
			if n, err := zipEntries(p); err != nil {
				return fmt.Errorf("%s: %s is not a readable module zip: %w", label, redactURL(url), err)
			} else if n > maxZipEntries {
				return fmt.Errorf("%s: breaks the module zip rules: %d files, more than the %d ssf reads", label, n, maxZipEntries)
			}
			// The module zip rules next (paths outside the module, case collisions, sizes): the go command would
			// refuse a zip that breaks them, and they bound what hashing will inflate. CheckZip reads only the
			// zip's directory, so a zip bomb is refused before it is inflated.
			cf, err := modzip.CheckZip(m, p)
			if err == nil {
				err = cf.Err()
			}
			if err != nil {
				return fmt.Errorf("%s: breaks the module zip rules: %w", label, err)
			}
			got, err := hashZip(p)
			if err != nil {
				return fmt.Errorf("%s: %s is not a readable module zip: %w", label, redactURL(url), err)
			}
			if got != pin.h1 {
				return &MismatchError{What: label, Pinned: fmt.Sprintf("%s:%d", g.sumName, pin.line), Want: pin.h1, URL: redactURL(url), Got: got}
			}
			return nil
		}
	}
	// One decision per module version, whichever of its files is fetched first: it names the zip and its pin
	// when go.sum has one (what a build compiles), else the go.mod.
	cand := Candidate{Kind: Gomod, Name: m.Path, Version: m.Version, PURL: golangPURL(m), URL: g.proxy + "/" + ep + "/@v/" + ev + ".zip", Pin: pin.h1}
	if zp, ok := g.sum.zip[m]; ok {
		cand.Pin = zp.h1
	}
	if err := g.f.admit(ctx, cand); err != nil {
		return cached{}, "", "", err
	}
	c, err := g.f.get(ctx, goFileKey(file, pin.h1), url, check)
	if err != nil {
		var fe *FetchError
		if errors.As(err, &fe) {
			return cached{}, "", "", fmt.Errorf("fetching %s from the Go module proxy: %w", label, err)
		}
		return cached{}, "", "", err
	}
	return c, redactURL(url), pin.h1, nil
}

// redactURL drops the user and password a proxy URL may carry (https://user:token@proxy.example/): what is
// recorded, in the provenance and SBOMs, is where the bytes came from, never a credential.
func redactURL(s string) string {
	u, err := neturl.Parse(s)
	if err != nil {
		// Unparsable (a bad escape or a control byte in a password, an unescaped '/' in it): the error that says
		// so names the URL, so everything before its last '@' after the scheme goes, more than the user information
		// when a path holds an '@' too, never less.
		if i := strings.Index(s, "://"); i >= 0 {
			rest, _, _ := strings.Cut(s[i+3:], "#")
			if at := strings.LastIndex(rest, "@"); at >= 0 {
				return s[:i+3] + "***@" + s[i+3+at+1:]
			}
		}
		return s
	}
	if u.User == nil {
		return s
	}
	u.User = nil
	return u.String()
}

// layOut places the fetched files in tree/GoProxyDir as the go command's GOPROXY protocol expects them, with a
// .info file per version, and returns one Dependency per module version.
func (g *goIngest) layOut(tree string, files []goFile) ([]Dependency, error) {
	byMod := map[module.Version]map[string]*goCall{}
	var mods []module.Version
	for _, file := range files {
		if byMod[file.m] == nil {
			byMod[file.m] = map[string]*goCall{}
			mods = append(mods, file.m)
		}
		byMod[file.m][file.ext] = g.calls[file]
	}
	module.Sort(mods)
	deps := make([]Dependency, len(mods))
	errs := make([]error, len(mods))
	// Creating directories and links is most of a warm ingestion that is not hashing: a few modules at once.
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(8, len(mods)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(mods) {
					return
				}
				deps[i], errs[i] = layOutModule(tree, mods[i], byMod[mods[i]])
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return deps, nil
}

// layOutModule places one module version's files (c["mod"], c["zip"]) and writes its .info.
func layOutModule(tree string, m module.Version, c map[string]*goCall) (Dependency, error) {
	ep, _ := module.EscapePath(m.Path)
	ev, _ := module.EscapeVersion(m.Version)
	base := path.Join(GoProxyDir, ep, "@v", ev)
	d := Dependency{Kind: Gomod, Name: m.Path, Version: m.Version, URI: golangPURL(m), ModOnly: c["zip"] == nil}
	if err := os.MkdirAll(filepath.Join(tree, filepath.FromSlash(path.Dir(base))), 0o755); err != nil {
		return d, fmt.Errorf("laying out module %s: %w", m, err)
	}
	for _, ext := range []string{"mod", "zip"} {
		if c[ext] == nil {
			continue
		}
		if err := placeOnce(tree, base+"."+ext, c[ext].c); err != nil {
			return d, fmt.Errorf("laying out module %s: %w", m, err)
		}
		// The zip's record wins: Digest and Pin are the .mod's only for a module of which only go.mod was needed.
		d.URL, d.Digest, d.Pin = c[ext].url, c[ext].c.Digest, c[ext].pin
	}
	info := fmt.Sprintf("{\"Version\":%q}\n", m.Version)
	if err := writeOnce(filepath.Join(tree, filepath.FromSlash(base+".info")), []byte(info)); err != nil {
		return d, fmt.Errorf("laying out module %s: %w", m, err)
	}
	return d, nil
}

// placeOnce places c at rel unless an earlier gomod Spec of the same build did (its bytes passed the same
// check against the same module version).
func placeOnce(tree, rel string, c cached) error {
	if _, err := os.Lstat(filepath.Join(tree, filepath.FromSlash(rel))); err == nil {
		return nil
	}
	return place(tree, rel, c)
}

func writeOnce(p string, data []byte) error {
	if _, err := os.Lstat(p); err == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o444)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// golangPURL is the package URL of a module version: pkg:golang/<path>@<version>, each part percent-encoded where
// purl requires it (a version's "+incompatible" becomes %2Bincompatible).
func golangPURL(m module.Version) string {
	segs := strings.Split(m.Path, "/")
	for i, s := range segs {
		segs[i] = purlEscape(s)
	}
	return "pkg:golang/" + strings.Join(segs, "/") + "@" + purlEscape(m.Version)
}

func purlEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_' || c == '~' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// goEnv is what the go command needs to build offline from the GOPROXY tree at MountPoint.
func goEnv() []string { return goEnvFor("file://" + MountPoint + "/" + GoProxyDir) }

// goEnvFor is goEnv for a GOPROXY tree at proxyURL (tests point it at a temporary tree).
func goEnvFor(proxyURL string) []string {
	return []string{
		// The only source of modules: the checked tree. No ",direct": the go command never reaches a VCS. Empty
		// GOPRIVATE and GONOPROXY, whatever the builder image says, so that no module is meant to bypass it.
		"GOPROXY=" + proxyURL,
		"GOPRIVATE=",
		"GONOPROXY=",
		// No checksum database to ask (there is no network); go.sum still checks every file the go command reads,
		// and -mod=readonly (the default since Go 1.16, spelled out) refuses to add what go.sum lacks.
		"GOSUMDB=off",
		"GOFLAGS=-mod=readonly",
		// The builder's own go, never a toolchain download a go.mod's toolchain line asks for.
		"GOTOOLCHAIN=local",
		// The go command unpacks the zips into a writable module cache; /tmp is the task's own.
		"GOMODCACHE=/tmp/go/pkg/mod",
	}
}
