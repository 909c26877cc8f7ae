package deps

import (
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"

	"github.com/ssf-dev/ssf/internal/content"
)

// How npm in a task finds the packages (checked with npm 11.19.1 on Node 20, and with Debian 12's npm 9.2.0 on
// Node 18):
//
// The tree holds an npm cache (cacache) at NpmCacheDir/_cacache. content-v2/sha512/<2>/<2>/<rest> holds every
// tarball under its sha512, and next to them one small packument (registry metadata) per package name, listing
// only the versions the lock files pin. index-v5 maps the URLs npm asks for, under npmTaskRegistry, to those
// contents: <registry>/<name> to the packument and <registry>/<name>/-/<base>-<version>.tgz to the tarball.
//
// npm needs both when the lock has no "resolved" (omit-lockfile-registry-resolved): it then resolves
// name@version through the packument before it can know the tarball. With "resolved" and "integrity" it reads the
// tarball straight from content-v2 by its integrity and needs no index at all.
//
// npm cannot use that cache where it lies, read-only: every lookup in the index (make-fetch-happen's cache, through
// cacache's index.compact) rewrites the index bucket it read, and a failed write is taken as "not cached". And npm
// 9 (pacote 15) writes every tarball it fetches by way of a packument back into content-v2 (when the lock has no
// "resolved"): the file there already exists, so cacache keeps it but chmods it 0444, and when that fails (a
// read-only file system, a file not the task's own) takes the tarball for corrupted, tries to delete it and fails
// the install (EROFS, EACCES). So a task gets its own writable copy of the whole cache, PrepareNpmCache makes it in
// the task's /tmp: as many bytes as the tarballs, once per task. cacache checks their integrity on every read.

// npmTaskRegistry is the registry URL npm in a task uses: one that cannot be reached (.invalid never resolves,
// RFC 2606), as tasks have no network. It only names the entries of the cache's index, whatever registry the
// control plane fetched from; npm's own messages name it, so a package missing from the cache reads
// "request to https://registry.npm.ssf.invalid/NAME failed: cache mode is 'only-if-cached'".
const npmTaskRegistry = "https://registry.npm.ssf.invalid/"

// DefaultNpmRegistry is where packages whose lock entry has no "resolved" come from when Options.NpmRegistry is
// empty: npm's own default.
const DefaultNpmRegistry = "https://registry.npmjs.org/"

// npmTaskCache is where a task's npm cache is (in the task's own /tmp; see PrepareNpmCache).
const npmTaskCache = "/tmp/.npm"

// npmEnv is what npm needs to install offline from the npm cache in the tree. The values win over a project's
// .npmrc (npm reads the environment after it).
func npmEnv(scripts bool) []string { return npmEnvFor(npmTaskCache, scripts) }

// npmEnvFor is npmEnv with the cache at cache (tests run npm on the host).
func npmEnvFor(cache string, scripts bool) []string {
	return []string{
		"npm_config_cache=" + cache,
		// Only the cache: no request leaves npm, and one the cache cannot answer fails (ENOTCACHED).
		"npm_config_offline=true",
		"npm_config_registry=" + npmTaskRegistry,
		fmt.Sprintf("npm_config_ignore_scripts=%t", !scripts),
		"npm_config_audit=false",
		"npm_config_fund=false",
		"npm_config_update_notifier=false",
	}
}

// PrepareNpmCache makes the npm cache a task uses at <tmp>/.npm, tmp being the directory the task sees as /tmp:
// a writable copy of the tree's npm cache, index and tarballs (npm rewrites both; see above), everything in it
// belonging to uid:gid. It does nothing when the tree has no npm cache. Call it before the task's first step runs,
// on a fresh tmp.
func PrepareNpmCache(tree, tmp string, uid, gid int) error {
	src := filepath.Join(tree, NpmCacheDir, "_cacache")
	if _, err := os.Lstat(filepath.Join(src, "index-v5")); errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	cache := filepath.Join(tmp, path.Base(npmTaskCache))
	if err := os.Mkdir(cache, 0o700); err != nil {
		return fmt.Errorf("preparing the task's npm cache: %w", err)
	}
	if err := os.Chown(cache, uid, gid); err != nil {
		return err
	}
	cacache := filepath.Join(cache, "_cacache")
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		dst := filepath.Join(cacache, rel)
		switch {
		case d.IsDir():
			if err := os.Mkdir(dst, 0o700); err != nil {
				return err
			}
		case d.Type().IsRegular():
			if err := copyRegular(p, dst, 0o600); err != nil {
				return fmt.Errorf("preparing the task's npm cache: %w", err)
			}
		default:
			return fmt.Errorf("preparing the task's npm cache: %s is not a regular file", p)
		}
		return os.Chown(dst, uid, gid)
	})
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("the npm cache (%d bytes of tarballs and index, copied for every npm task) does not fit on the task's disk with the source: raise maxDiskBytes in config.yaml (it bounds /workspace, /tmp and /outputs of one task together): %w", treeBytes(src), err)
	}
	return err
}

// treeBytes is the size of the regular files under dir, for messages.
func treeBytes(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// copyRegular copies the file src to dst, a new file of mode perm.
func copyRegular(src, dst string, perm os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	return copyFile(in, dst, perm)
}

// copyFile copies what is left to read of in to dst, a new file of mode perm.
func copyFile(in io.Reader, dst string, perm os.FileMode) error {
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// npmLockFile is the part of package-lock.json that pins packages.
type npmLockFile struct {
	LockfileVersion *int                    `json:"lockfileVersion"`
	Packages        map[string]npmLockEntry `json:"packages"`
}

type npmLockEntry struct {
	Name      string `json:"name"`
	Version   string `json:"version"`
	Resolved  string `json:"resolved"`
	Integrity string `json:"integrity"`
	Link      bool   `json:"link"`
	InBundle  bool   `json:"inBundle"`
	Dev       bool   `json:"dev"`
}

// npmPackage is one package a lock file pins: a tarball and its sha512.
type npmPackage struct {
	Key       string // the lock's key of its first location, e.g. "node_modules/@scope/name"
	Name      string
	Version   string
	URL       string // where to fetch the tarball
	Integrity string // "sha512-<base64>", as npm writes it
	Sum       []byte // the sha512 itself
	Dev       bool   // every location of it is a devDependency's
}

// MaxNpmPackages bounds the packages of one lock file. The largest real projects have some tens of thousands; the
// bound keeps one source from having the control plane fetch, and lay out as several files each, millions of
// (tiny, self-pinned) packages.
const MaxNpmPackages = 100_000

// npmNameRE is what npm accepts as a package name (new and legacy: capitals were allowed once), optionally scoped.
var npmNameRE = regexp.MustCompile(`^(@[A-Za-z0-9~-][A-Za-z0-9._~-]*/)?[A-Za-z0-9~-][A-Za-z0-9._~-]*$`)

// npmVersionRE is a semver version's character set (npm only publishes valid semver).
var npmVersionRE = regexp.MustCompile(`^[0-9A-Za-z][0-9A-Za-z.+-]*$`)

// parseNpmLock reads a package-lock.json (at lockPath, for messages) and returns the packages it pins, sorted by
// name and version, one per name@version. Packages without "resolved" come from registry.
func parseNpmLock(data []byte, lockPath, registry string) ([]npmPackage, error) {
	var lock npmLockFile
	if err := json.Unmarshal(data, &lock); err != nil {
		return nil, inputErrorf("reading %s: %v; regenerate it with npm install --package-lock-only", lockPath, err)
	}
	if lock.LockfileVersion == nil || (*lock.LockfileVersion != 2 && *lock.LockfileVersion != 3) {
		v := "none"
		if lock.LockfileVersion != nil {
			v = fmt.Sprint(*lock.LockfileVersion)
		}
		return nil, inputErrorf("%s has lockfileVersion %s; ssf reads lockfileVersion 2 or 3: regenerate it with npm 7 or later (npm install --package-lock-only)", lockPath, v)
	}
	if lock.Packages == nil {
		return nil, inputErrorf("%s has no \"packages\"; regenerate it with npm 7 or later (npm install --package-lock-only)", lockPath)
	}
	if len(lock.Packages) > MaxNpmPackages {
		return nil, inputErrorf("%s lists %d packages; ssf fetches at most %d from one lock file", lockPath, len(lock.Packages), MaxNpmPackages)
	}
	keys := make([]string, 0, len(lock.Packages))
	for k := range lock.Packages {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	byID := map[string]*npmPackage{}
	for _, key := range keys {
		e := lock.Packages[key]
		i := npmPackageStart(key)
		// "" is the project; other keys outside node_modules are its workspaces, which are in the source. Links
		// point at those, and bundled packages come inside their parent's tarball.
		if key == "" || i < 0 || e.Link || e.InBundle {
			continue
		}
		name := e.Name
		if name == "" {
			name = key[i:]
		}
		where := fmt.Sprintf("%s: package %q", lockPath, key)
		if !npmNameRE.MatchString(name) {
			return nil, inputErrorf("%s: %q is not an npm package name", where, name)
		}
		if !npmVersionRE.MatchString(e.Version) {
			return nil, inputErrorf("%s (%s) has no valid version (%q); regenerate the lock file with npm install --package-lock-only", where, name, e.Version)
		}
		id := name + "@" + e.Version
		u := e.Resolved
		if u == "" {
			u = npmTarballURL(registry, name, e.Version)
		} else if pu, err := url.Parse(u); err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			return nil, inputErrorf("%s (%s) comes from %q, which ssf cannot fetch and check against a sha512 pin (git, file, link and other non-registry sources are refused): depend on a published version from the registry instead", where, id, u)
		}
		// The name and version are the lock's words, and the ssf.deps gate decides on them: a "resolved" that is
		// the registry's tarball of another package (a hand-edited key node_modules/harmless, "name" left out,
		// pointing at a banned package's tarball) would pass a rule that bans that package by name. npm's own
		// aliases record the real name ("name"), so a URL in the registry's layout must agree with the name and
		// version (any other URL shows in the purl's download_url, and the gate's input.dependency.url).
		if un, uv, ok := npmRegistryTarball(u); ok && (un != name || uv != e.Version) {
			return nil, inputErrorf("%s is %s, but it comes from %s, the registry's tarball of %s@%s: the lock's name and version must be those of the package it fetches (an alias records the real name in \"name\"); regenerate the lock file with npm install --package-lock-only", where, id, redactURL(u), un, uv)
		}
		integrity, sum, err := npmSHA512(e.Integrity)
		if err != nil {
			return nil, inputErrorf("%s (%s) %v; ssf pins npm packages by their sha512 integrity: regenerate the lock file with npm 7 or later (npm install --package-lock-only) so that every package has one", where, id, err)
		}
		if p, ok := byID[id]; ok {
			if p.Integrity != integrity {
				return nil, inputErrorf("%s pins %s to %s, but %q pins it to %s; regenerate the lock file with npm install --package-lock-only", where, id, integrity, p.Key, p.Integrity)
			}
			p.Dev = p.Dev && e.Dev
			continue
		}
		byID[id] = &npmPackage{Key: key, Name: name, Version: e.Version, URL: u, Integrity: integrity, Sum: sum, Dev: e.Dev}
	}
	pkgs := make([]npmPackage, 0, len(byID))
	for _, p := range byID {
		pkgs = append(pkgs, *p)
	}
	sort.Slice(pkgs, func(i, j int) bool {
		if pkgs[i].Name != pkgs[j].Name {
			return pkgs[i].Name < pkgs[j].Name
		}
		return pkgs[i].Version < pkgs[j].Version
	})
	return pkgs, nil
}

// npmRegistryTarball reads u as a tarball URL in the registry's layout, .../<name>/-/<base>-<version>.tgz (the path
// percent-decoded, on any host: a registry may be reached by many spellings of its host, and mirrors keep the
// layout), and returns the name and version it names; ok is false for a URL of any other shape, whose package the
// lock's author alone vouches for (it gets a purl download_url qualifier).
func npmRegistryTarball(u string) (name, version string, ok bool) {
	pu, err := url.Parse(u)
	if err != nil {
		return "", "", false
	}
	dir, file, found := cutLast(pu.Path, "/-/")
	if !found {
		return "", "", false
	}
	parent, base, _ := cutLast(dir, "/")
	name = base
	if _, scope, _ := cutLast(parent, "/"); strings.HasPrefix(scope, "@") {
		name = scope + "/" + base
	}
	v, found := strings.CutPrefix(file, base+"-")
	if !found || base == "" {
		return "", "", false
	}
	if v, found = strings.CutSuffix(v, ".tgz"); !found || v == "" || strings.Contains(v, "/") {
		return "", "", false
	}
	return name, v, true
}

// cutLast is strings.Cut at the last sep.
func cutLast(s, sep string) (before, after string, found bool) {
	if i := strings.LastIndex(s, sep); i >= 0 {
		return s[:i], s[i+len(sep):], true
	}
	return "", s, false
}

// npmPackageStart is where the package name starts in a lock's key: after its last node_modules/ directory, or -1
// for a key that is not in a node_modules directory (the project and its workspaces).
func npmPackageStart(key string) int {
	for i := len(key); i >= 0; i-- {
		i = strings.LastIndex(key[:i], "node_modules/")
		if i < 0 {
			return -1
		}
		if i == 0 || key[i-1] == '/' {
			return i + len("node_modules/")
		}
	}
	return -1
}

// npmSHA512 picks the sha512 out of an SRI integrity string ("sha512-<base64>", maybe among other hashes).
func npmSHA512(integrity string) (string, []byte, error) {
	if integrity == "" {
		return "", nil, errors.New("has no integrity")
	}
	for _, f := range strings.Fields(integrity) {
		b64, ok := strings.CutPrefix(f, "sha512-")
		if !ok {
			continue
		}
		// An SRI hash may carry options after a '?'.
		b64, _, _ = strings.Cut(b64, "?")
		sum, err := base64.StdEncoding.DecodeString(b64)
		if err != nil || len(sum) != sha512.Size {
			return "", nil, fmt.Errorf("has a malformed sha512 integrity %q", f)
		}
		return "sha512-" + base64.StdEncoding.EncodeToString(sum), sum, nil
	}
	return "", nil, fmt.Errorf("has no sha512 integrity (only %q)", integrity)
}

// npmTarballURL is where a registry keeps a package's tarball: <registry>/<name>/-/<base>-<version>.tgz, base
// being the name without its scope.
func npmTarballURL(registry, name, version string) string {
	base := name[strings.LastIndex(name, "/")+1:]
	return strings.TrimRight(registry, "/") + "/" + name + "/-/" + base + "-" + version + ".tgz"
}

// npmPURL is a package's purl: pkg:npm/<name>@<version>, the scope's @ percent-encoded.
func npmPURL(name, version string) string {
	ns, n, scoped := strings.Cut(name, "/")
	if !scoped {
		return "pkg:npm/" + purlEscape(name) + "@" + purlEscape(version)
	}
	return "pkg:npm/" + purlEscape(ns) + "/" + purlEscape(n) + "@" + purlEscape(version)
}

// npmPURLFrom is the purl of a package fetched from u. A plain pkg:npm purl names the registry's package
// name@version; ssf can say that only when u is where the registry keeps that very tarball (the configured
// registry, or npm's default one). A lock may name any URL for any name and version, and the sha512 then pins
// bytes nobody but the lock's author vouches for: such a package gets a download_url qualifier (as Hermeto does
// for npm packages from URLs), so that neither the provenance nor an SBOM passes it off as the registry's.
func npmPURLFrom(name, version, u, registry string) string {
	purl := npmPURL(name, version)
	u = redactURL(u)
	for _, r := range []string{registry, DefaultNpmRegistry} {
		if u == npmTarballURL(redactURL(r), name, version) {
			return purl
		}
	}
	return purl + "?download_url=" + purlQualifierEscape(u)
}

// purlQualifierEscape percent-encodes a purl qualifier value: everything but unreserved characters and the
// separators a URL needs to stay readable.
func purlQualifierEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(".-_~:/", c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// npm ingests the packages that package-lock.json (or npm-shrinkwrap.json) at s.Path pins: each tarball from its "resolved" URL or the
// registry, checked against the lock's sha512 integrity, then laid out as an npm cache at tree/NpmCacheDir.
func (f *fetcher) npm(ctx context.Context, src fs.FS, s Spec, tree string) ([]Dependency, error) {
	// npm ci installs from npm-shrinkwrap.json when there is one, and then ignores package-lock.json.
	var (
		lockPath string
		data     []byte
		err      error
	)
	for _, name := range []string{"npm-shrinkwrap.json", "package-lock.json"} {
		lockPath = path.Join(s.Path, name)
		data, err = fs.ReadFile(src, lockPath)
		if !errors.Is(err, fs.ErrNotExist) {
			break
		}
	}
	if errors.Is(err, fs.ErrNotExist) {
		return nil, inputErrorf("the npm dependencies at %q have no package-lock.json (lockfileVersion 2 or 3) in the source: create it with npm install --package-lock-only and commit it", s.Path)
	}
	if err != nil {
		return nil, inputErrorf("reading %s: %v", lockPath, err) // the source's own files: a symlink, say
	}
	registry := f.opts.NpmRegistry
	if registry == "" {
		registry = DefaultNpmRegistry
	}
	pkgs, err := parseNpmLock(data, lockPath, registry)
	if err != nil {
		return nil, err
	}

	// One download per tarball and URL, however many names and places the lock gives it. The same bytes from two
	// URLs are two downloads: each package's recorded URL is one its bytes came from (see sourceKey).
	type fetch struct {
		pkg npmPackage
		got cached
	}
	fetchKey := func(p npmPackage) string { return p.Integrity + " " + p.URL }
	byIntegrity := map[string]*fetch{}
	var order []*fetch
	for _, p := range pkgs {
		if byIntegrity[fetchKey(p)] == nil {
			byIntegrity[fetchKey(p)] = &fetch{pkg: p}
			order = append(order, byIntegrity[fetchKey(p)])
		}
	}
	// Every package is decided on before any is fetched, and every refusal is reported, not the first.
	var refused []error
	for _, ft := range order {
		p := ft.pkg
		if err := f.admit(ctx, Candidate{Kind: Npm, Name: p.Name, Version: p.Version, PURL: npmPURLFrom(p.Name, p.Version, p.URL, registry), URL: p.URL, Pin: p.Integrity}); err != nil {
			refused = append(refused, fmt.Errorf("%s: package %q: %w", lockPath, p.Key, err))
		}
	}
	if len(refused) > 0 {
		return nil, errors.Join(refused...)
	}
	f.progress.expect(len(order))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	// Cache hits are hashed without taking a download slot: bound the goroutines too, or a lock of thousands of
	// packages would open thousands of files at once.
	limit := make(chan struct{}, cap(f.slots))
	for _, ft := range order {
		wg.Add(1)
		limit <- struct{}{}
		go func() {
			defer func() { <-limit; wg.Done() }()
			p := ft.pkg
			check := func(file string) error {
				got, err := sha512File(file)
				if err != nil {
					return err
				}
				if !bytes.Equal(got, p.Sum) {
					return &MismatchError{What: "npm package " + p.Name + "@" + p.Version, Pinned: lockPath, Want: p.Integrity,
						URL: redactURL(p.URL), Got: "sha512-" + base64.StdEncoding.EncodeToString(got)}
				}
				return nil
			}
			c, err := f.get(ctx, "npm/sha512/"+hex.EncodeToString(p.Sum)+"."+sourceKey(p.URL), p.URL, check)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = fmt.Errorf("%s: package %q: %w", lockPath, p.Key, err)
					cancel()
				}
				return
			}
			ft.got = c
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}

	cacache := filepath.Join(tree, NpmCacheDir, "_cacache")
	out := make([]Dependency, 0, len(pkgs))
	versions := map[string]map[string]npmDist{}
	for _, p := range pkgs {
		c := byIntegrity[fetchKey(p)].got
		if err := placeContent(cacache, p.Sum, c); err != nil {
			return nil, fmt.Errorf("laying out npm package %s@%s: %w", p.Name, p.Version, err)
		}
		tarball := npmTarballURL(npmTaskRegistry, p.Name, p.Version)
		// The size of the file get hashed: c.Path names whatever is there now, which another build may have replaced.
		if err := writeIndexEntry(cacache, tarball, p.Integrity, c.file.Size(), "", "application/octet-stream"); err != nil {
			return nil, err
		}
		if versions[p.Name] == nil {
			versions[p.Name] = map[string]npmDist{}
		}
		versions[p.Name][p.Version] = npmDist{Tarball: tarball, Integrity: p.Integrity}
		out = append(out, Dependency{
			Kind:    Npm,
			Name:    p.Name,
			Version: p.Version,
			URI:     npmPURLFrom(p.Name, p.Version, p.URL, registry),
			URL:     p.URL,
			Digest:  c.Digest,
			Pin:     p.Integrity,
			Dev:     p.Dev,
		})
	}
	names := make([]string, 0, len(versions))
	for n := range versions {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := writePackument(cacache, n, versions[n]); err != nil {
			return nil, fmt.Errorf("laying out npm package %s: %w", n, err)
		}
	}
	return out, nil
}

// sha512File returns the sha512 of the file at p.
func sha512File(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha512.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, err
	}
	return h.Sum(nil), nil
}

// contentPath is where cacache keeps the bytes whose sha512 is sum.
func contentPath(cacache string, sum []byte) string {
	h := hex.EncodeToString(sum)
	return filepath.Join(cacache, "content-v2", "sha512", h[:2], h[2:4], h[4:])
}

// placeContent puts a checked tarball into the cache's content-v2, unless an earlier lock file put it there.
func placeContent(cacache string, sum []byte, c cached) error {
	p := contentPath(cacache, sum)
	if _, err := os.Lstat(p); err == nil {
		return nil
	}
	rel, err := filepath.Rel(cacache, p)
	if err != nil {
		return err
	}
	return place(cacache, filepath.ToSlash(rel), c)
}

// npmDist is one version of a package in a packument.
type npmDist struct {
	Tarball   string `json:"tarball"`
	Integrity string `json:"integrity"`
}

type npmPackumentVersion struct {
	Name    string  `json:"name"`
	Version string  `json:"version"`
	Dist    npmDist `json:"dist"`
}

type npmPackument struct {
	Name     string                         `json:"name"`
	DistTags map[string]string              `json:"dist-tags"`
	Versions map[string]npmPackumentVersion `json:"versions"`
}

// The Accept headers npm sends for packuments: the abbreviated ("corgi") form and the full document. The cache
// answers only requests whose Accept matches an entry's, so the index has one entry for each.
var npmPackumentAccepts = []string{
	content.NpmPackumentAccept,
	"application/json",
}

// writePackument writes the registry metadata npm reads to resolve name@version: the versions given, plus any an
// earlier lock file of the same build put there for the same name.
func writePackument(cacache, name string, versions map[string]npmDist) error {
	doc := npmPackument{Name: name, DistTags: map[string]string{}, Versions: map[string]npmPackumentVersion{}}
	u := strings.TrimRight(npmTaskRegistry, "/") + "/" + strings.Replace(name, "/", "%2f", 1)
	if old, err := readIndexEntry(cacache, u); err == nil {
		if err := json.Unmarshal(old, &doc); err != nil {
			return err
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	for v, d := range versions {
		doc.Versions[v] = npmPackumentVersion{Name: name, Version: v, Dist: d}
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	sum := sha512.Sum512(b)
	p := contentPath(cacache, sum[:])
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	if _, err := os.Lstat(p); errors.Is(err, fs.ErrNotExist) {
		if err := os.WriteFile(p, b, 0o444); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	integrity := "sha512-" + base64.StdEncoding.EncodeToString(sum[:])
	var lines []string
	for _, accept := range npmPackumentAccepts {
		lines = append(lines, indexLine(u, integrity, int64(len(b)), accept, "application/json"))
	}
	return writeBucket(cacache, u, lines)
}

// cacacheEntry is one line of a cacache index bucket, as make-fetch-happen writes it for a cached response.
type cacacheEntry struct {
	Key       string `json:"key"`
	Integrity string `json:"integrity"`
	Time      int64  `json:"time"`
	Size      int64  `json:"size"`
	Metadata  struct {
		Time       int64             `json:"time"`
		URL        string            `json:"url"`
		ReqHeaders map[string]string `json:"reqHeaders"`
		ResHeaders map[string]string `json:"resHeaders"`
		Options    struct {
			Compress bool `json:"compress"`
		} `json:"options"`
	} `json:"metadata"`
}

// cacheKey is make-fetch-happen's index key for a GET of u.
func cacheKey(u string) string { return "make-fetch-happen:request-cache:" + u }

// indexLine is a bucket line: the sha1 of the entry's JSON, a tab, the JSON (cacache drops lines whose sha1 does
// not match).
func indexLine(u, integrity string, size int64, accept, contentType string) string {
	var e cacacheEntry
	e.Key, e.Integrity, e.Size = cacheKey(u), integrity, size
	e.Metadata.URL = u
	e.Metadata.ReqHeaders = map[string]string{}
	if accept != "" {
		e.Metadata.ReqHeaders["accept"] = accept
	}
	e.Metadata.ResHeaders = map[string]string{"content-type": contentType}
	// make-fetch-happen compares this with the request's; npm asks with compression on.
	e.Metadata.Options.Compress = true
	b, _ := json.Marshal(e)
	sum := sha1.Sum(b)
	return hex.EncodeToString(sum[:]) + "\t" + string(b)
}

// bucketPath is where cacache keeps the index entries of key: index-v5/<sha256(key) split 2/2/rest>.
func bucketPath(cacache, key string) string {
	sum := sha256.Sum256([]byte(key))
	h := hex.EncodeToString(sum[:])
	return filepath.Join(cacache, "index-v5", h[:2], h[2:4], h[4:])
}

func writeIndexEntry(cacache, u, integrity string, size int64, accept, contentType string) error {
	return writeBucket(cacache, u, []string{indexLine(u, integrity, size, accept, contentType)})
}

// writeBucket replaces u's index bucket by lines.
func writeBucket(cacache, u string, lines []string) error {
	p := bucketPath(cacache, cacheKey(u))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return os.WriteFile(p, []byte("\n"+strings.Join(lines, "\n")), 0o444)
}

// readIndexEntry returns the content the first entry of u's bucket points at.
func readIndexEntry(cacache, u string) ([]byte, error) {
	b, err := os.ReadFile(bucketPath(cacache, cacheKey(u)))
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		_, j, ok := strings.Cut(line, "\t")
		if !ok {
			continue
		}
		var e cacacheEntry
		if err := json.Unmarshal([]byte(j), &e); err != nil {
			return nil, err
		}
		_, sum, err := npmSHA512(e.Integrity)
		if err != nil {
			return nil, err
		}
		return os.ReadFile(contentPath(cacache, sum))
	}
	return nil, fs.ErrNotExist
}
