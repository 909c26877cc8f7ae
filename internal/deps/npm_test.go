package deps

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"testing/fstest"

	"github.com/opencontainers/go-digest"
)

// sri is the npm integrity of b.
func sri(b []byte) string {
	s := sha512.Sum512(b)
	return "sha512-" + base64.StdEncoding.EncodeToString(s[:])
}

// npmServer is a registry on 127.0.0.1 that serves tarballs by path and counts requests.
type npmServer struct {
	*httptest.Server
	files map[string][]byte
	hits  atomic.Int64
}

func newNpmServer(t *testing.T, files map[string][]byte) *npmServer {
	s := &npmServer{files: files}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		b, ok := s.files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write(b)
	}))
	t.Cleanup(s.Close)
	return s
}

// lockJSON makes a package-lock.json from its "packages" map.
func lockJSON(t *testing.T, version int, packages map[string]map[string]any) []byte {
	t.Helper()
	if packages[""] == nil {
		packages[""] = map[string]any{"name": "p", "version": "1.0.0"}
	}
	b, err := json.MarshalIndent(map[string]any{"name": "p", "version": "1.0.0", "lockfileVersion": version, "requires": true, "packages": packages}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseNpmLock(t *testing.T) {
	good := sri([]byte("x"))
	tests := []struct {
		name     string
		lock     []byte
		wantErr  string // substrings of an *InputError, '|'-separated
		wantPkgs []string
	}{
		{
			name: "registry, scoped, nested, dev, alias, bundled, link, workspace",
			lock: lockJSON(t, 3, map[string]map[string]any{
				"node_modules/a":                   {"version": "1.0.0", "integrity": good},
				"node_modules/@s/b":                {"version": "2.0.0", "integrity": sri([]byte("b")), "dev": true},
				"node_modules/a/node_modules/@s/b": {"version": "2.0.0", "integrity": sri([]byte("b"))},
				"node_modules/c":                   {"version": "1.0.0", "integrity": sri([]byte("c")), "dev": true},
				"node_modules/c/node_modules/d":    {"version": "0.1.0", "inBundle": true},
				"node_modules/alias":               {"name": "real", "version": "3.0.0-rc.1+build", "integrity": sri([]byte("r")) + " sha1-AAAA"},
				"node_modules/ws":                  {"resolved": "packages/ws", "link": true},
				"packages/ws":                      {"name": "ws", "version": "0.0.0"},
				"node_modules/r":                   {"version": "1.0.0", "resolved": "https://mirror.example/r.tgz", "integrity": sri([]byte("rr"))},
				"tools/xnode_modules/w":            {"name": "w", "version": "0.0.0"},
			}),
			wantPkgs: []string{
				"@s/b@2.0.0 https://reg.example/@s/b/-/b-2.0.0.tgz dev=false",
				"a@1.0.0 https://reg.example/a/-/a-1.0.0.tgz dev=false",
				"c@1.0.0 https://reg.example/c/-/c-1.0.0.tgz dev=true",
				"r@1.0.0 https://mirror.example/r.tgz dev=false",
				"real@3.0.0-rc.1+build https://reg.example/real/-/real-3.0.0-rc.1+build.tgz dev=false",
			},
		},
		{name: "lockfileVersion 1", lock: []byte(`{"lockfileVersion": 1, "dependencies": {}}`), wantErr: "lockfileVersion 1|npm 7 or later"},
		{name: "no lockfileVersion", lock: []byte(`{"packages": {}}`), wantErr: "lockfileVersion none"},
		{name: "no packages", lock: []byte(`{"lockfileVersion": 2}`), wantErr: `no "packages"`},
		{name: "not JSON", lock: []byte(`{"lockfileVersion": `), wantErr: "web/package-lock.json"},
		{
			name:    "no integrity",
			lock:    lockJSON(t, 3, map[string]map[string]any{"node_modules/left-pad": {"version": "1.3.0"}}),
			wantErr: `web/package-lock.json: package "node_modules/left-pad" (left-pad@1.3.0) has no integrity|npm install --package-lock-only`,
		},
		{
			name:    "sha1 only",
			lock:    lockJSON(t, 2, map[string]map[string]any{"node_modules/old": {"version": "1.0.0", "integrity": "sha1-2jmj7l5rSw0yVb/vlWAYkK/YBwk="}}),
			wantErr: `package "node_modules/old" (old@1.0.0) has no sha512 integrity`,
		},
		{
			name:    "malformed sha512",
			lock:    lockJSON(t, 3, map[string]map[string]any{"node_modules/m": {"version": "1.0.0", "integrity": "sha512-AAAA"}}),
			wantErr: `package "node_modules/m" (m@1.0.0) has a malformed sha512 integrity`,
		},
		{
			name: "git dependency",
			lock: lockJSON(t, 3, map[string]map[string]any{"node_modules/g": {"version": "1.0.0",
				"resolved": "git+ssh://git@github.com/o/g.git#0123456789abcdef0123456789abcdef01234567", "integrity": good}}),
			wantErr: `package "node_modules/g" (g@1.0.0) comes from "git+ssh://git@github.com/o/g.git#0123456789abcdef0123456789abcdef01234567"|cannot fetch and check`,
		},
		{
			name:    "file dependency",
			lock:    lockJSON(t, 3, map[string]map[string]any{"node_modules/f": {"version": "1.0.0", "resolved": "file:../f.tgz", "integrity": good}}),
			wantErr: `package "node_modules/f" (f@1.0.0) comes from "file:../f.tgz"`,
		},
		{
			name:    "bad name",
			lock:    lockJSON(t, 3, map[string]map[string]any{"node_modules/x": {"name": "../../etc", "version": "1.0.0", "integrity": good}}),
			wantErr: `"../../etc" is not an npm package name`,
		},
		{
			name:    "bad version",
			lock:    lockJSON(t, 3, map[string]map[string]any{"node_modules/x": {"version": "1.0.0/../../y", "integrity": good}}),
			wantErr: `has no valid version`,
		},
		{
			name: "one version, two integrities",
			lock: lockJSON(t, 3, map[string]map[string]any{
				"node_modules/x":                 {"version": "1.0.0", "integrity": good},
				"node_modules/y/node_modules/x":  {"version": "1.0.0", "integrity": sri([]byte("other"))},
				"node_modules/y":                 {"version": "1.0.0", "integrity": sri([]byte("y"))},
				"node_modules/z/node_modules/xx": {"version": "1.0.0", "integrity": good},
			}),
			wantErr: `pins x@1.0.0 to`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pkgs, err := parseNpmLock(tc.lock, "web/package-lock.json", "https://reg.example/")
			if tc.wantErr != "" {
				var ie *InputError
				if !errors.As(err, &ie) {
					t.Fatalf("err = %v, want an *InputError", err)
				}
				for _, want := range strings.Split(tc.wantErr, "|") {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("err = %q, want it to contain %q", err, want)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, p := range pkgs {
				got = append(got, fmt.Sprintf("%s@%s %s dev=%t", p.Name, p.Version, p.URL, p.Dev))
			}
			if strings.Join(got, "\n") != strings.Join(tc.wantPkgs, "\n") {
				t.Errorf("packages:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.wantPkgs, "\n"))
			}
		})
	}
}

func TestNpmPURL(t *testing.T) {
	for name, want := range map[string]string{
		"left-pad@1.3.0":           "pkg:npm/left-pad@1.3.0",
		"@sindresorhus/is@4.6.0":   "pkg:npm/%40sindresorhus/is@4.6.0",
		"x@1.0.0-rc.1+build.5":     "pkg:npm/x@1.0.0-rc.1%2Bbuild.5",
		"@types/node@22.0.0-beta1": "pkg:npm/%40types/node@22.0.0-beta1",
	} {
		i := strings.LastIndex(name, "@")
		if got := npmPURL(name[:i], name[i+1:]); got != want {
			t.Errorf("npmPURL(%q) = %q, want %q", name, got, want)
		}
	}
}

// fakeNpm is a lock file and a registry for it: packages of made-up bytes.
func fakeNpm(t *testing.T) (src fstest.MapFS, srv *npmServer, tarballs map[string][]byte) {
	t.Helper()
	tarballs = map[string][]byte{
		"/a/-/a-1.0.0.tgz":     []byte("tarball of a 1.0.0"),
		"/@s/b/-/b-2.0.0.tgz":  []byte("tarball of @s/b 2.0.0"),
		"/@s/b/-/b-1.0.0.tgz":  []byte("tarball of @s/b 1.0.0"),
		"/dev/-/dev-0.1.0.tgz": []byte("tarball of dev 0.1.0"),
	}
	srv = newNpmServer(t, tarballs)
	lock := lockJSON(t, 3, map[string]map[string]any{
		"node_modules/a":                   {"version": "1.0.0", "integrity": sri(tarballs["/a/-/a-1.0.0.tgz"])},
		"node_modules/@s/b":                {"version": "2.0.0", "integrity": sri(tarballs["/@s/b/-/b-2.0.0.tgz"])},
		"node_modules/a/node_modules/@s/b": {"version": "1.0.0", "integrity": sri(tarballs["/@s/b/-/b-1.0.0.tgz"])},
		"node_modules/dev":                 {"version": "0.1.0", "integrity": sri(tarballs["/dev/-/dev-0.1.0.tgz"]), "dev": true},
	})
	return fstest.MapFS{"web/package-lock.json": {Data: lock}}, srv, tarballs
}

func TestNpmIngest(t *testing.T) {
	src, srv, tarballs := fakeNpm(t)
	cache, tree := t.TempDir(), t.TempDir()
	opts := Options{Cache: cache, NpmRegistry: srv.URL + "/"}
	got, err := Ingest(context.Background(), src, []Spec{{Kind: Npm, Path: "web"}}, tree, opts)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, d := range got {
		lines = append(lines, fmt.Sprintf("%s %s %s %s %s %s dev=%t", d.Kind, d.Name, d.Version, d.URI, strings.TrimPrefix(d.URL, srv.URL), d.Pin, d.Dev))
		b := tarballs[strings.TrimPrefix(d.URL, srv.URL)]
		if d.Digest != digest.FromBytes(b) {
			t.Errorf("%s: Digest = %s, want the tarball's sha256 %s", d.Name, d.Digest, digest.FromBytes(b))
		}
		// Every tarball is in the tree's npm cache under its sha512, read-only.
		sum := sha512.Sum512(b)
		p := contentPath(filepath.Join(tree, NpmCacheDir, "_cacache"), sum[:])
		if c, err := os.ReadFile(p); err != nil || !bytes.Equal(c, b) {
			t.Errorf("%s: content %s: %v", d.Name, p, err)
		}
		if fi, err := os.Stat(p); err == nil && fi.Mode().Perm()&0o222 != 0 {
			t.Errorf("%s: %s is writable (%v)", d.Name, p, fi.Mode())
		}
	}
	want := []string{
		"npm @s/b 1.0.0 pkg:npm/%40s/b@1.0.0 /@s/b/-/b-1.0.0.tgz " + sri(tarballs["/@s/b/-/b-1.0.0.tgz"]) + " dev=false",
		"npm @s/b 2.0.0 pkg:npm/%40s/b@2.0.0 /@s/b/-/b-2.0.0.tgz " + sri(tarballs["/@s/b/-/b-2.0.0.tgz"]) + " dev=false",
		"npm a 1.0.0 pkg:npm/a@1.0.0 /a/-/a-1.0.0.tgz " + sri(tarballs["/a/-/a-1.0.0.tgz"]) + " dev=false",
		"npm dev 0.1.0 pkg:npm/dev@0.1.0 /dev/-/dev-0.1.0.tgz " + sri(tarballs["/dev/-/dev-0.1.0.tgz"]) + " dev=true",
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("dependencies:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	// The packument of @s/b lists both pinned versions, each pointing at a tarball URL the index maps to its content.
	cacache := filepath.Join(tree, NpmCacheDir, "_cacache")
	b, err := readIndexEntry(cacache, npmTaskRegistry+"@s%2fb")
	if err != nil {
		t.Fatal(err)
	}
	var doc npmPackument
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	var versions []string
	for v, m := range doc.Versions {
		versions = append(versions, v)
		if c, err := readIndexEntry(cacache, m.Dist.Tarball); err != nil || sri(c) != m.Dist.Integrity {
			t.Errorf("@s/b@%s: tarball %s in the index: %v", v, m.Dist.Tarball, err)
		}
	}
	sort.Strings(versions)
	if doc.Name != "@s/b" || strings.Join(versions, ",") != "1.0.0,2.0.0" {
		t.Errorf("packument of @s/b: %s", b)
	}

	// A second build takes every tarball from the cache, checked again, and asks the registry for nothing.
	before := srv.hits.Load()
	if _, err := Ingest(context.Background(), src, []Spec{{Kind: Npm, Path: "web"}}, t.TempDir(), opts); err != nil {
		t.Fatal(err)
	}
	if n := srv.hits.Load() - before; n != 0 {
		t.Errorf("a warm cache made %d requests", n)
	}
}

func TestNpmIngestMismatch(t *testing.T) {
	src, srv, tarballs := fakeNpm(t)
	want := sri(tarballs["/a/-/a-1.0.0.tgz"])
	bad := []byte("a tampered tarball")
	srv.files["/a/-/a-1.0.0.tgz"] = bad
	tree := t.TempDir()
	_, err := Ingest(context.Background(), src, []Spec{{Kind: Npm, Path: "web"}}, tree, Options{Cache: t.TempDir(), NpmRegistry: srv.URL})
	var me *MismatchError
	if !errors.As(err, &me) {
		t.Fatalf("err = %v, want a *MismatchError", err)
	}
	if me.What != "npm package a@1.0.0" || me.Want != want || me.Got != sri(bad) {
		t.Errorf("mismatch = %+v, want a@1.0.0, %s, %s", me, want, sri(bad))
	}
	if !strings.Contains(err.Error(), `web/package-lock.json: package "node_modules/a"`) {
		t.Errorf("err = %q, want it to name the lock file and the package", err)
	}
	sum := sha512.Sum512(bad)
	if _, err := os.Stat(contentPath(filepath.Join(tree, NpmCacheDir, "_cacache"), sum[:])); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the tampered tarball is in the tree: %v", err)
	}
}

// TestNpmCacheHitVerified: a damaged cache entry is not trusted. It is fetched again; when the registry serves the
// same wrong bytes, the build stops with a mismatch.
func TestNpmCacheHitVerified(t *testing.T) {
	src, srv, tarballs := fakeNpm(t)
	cache := t.TempDir()
	opts := Options{Cache: cache, NpmRegistry: srv.URL}
	if _, err := Ingest(context.Background(), src, []Spec{{Kind: Npm, Path: "web"}}, t.TempDir(), opts); err != nil {
		t.Fatal(err)
	}
	good := tarballs["/a/-/a-1.0.0.tgz"]
	sum := sha512.Sum512(good)
	entry := filepath.Join(cache, "npm", "sha512", hex.EncodeToString(sum[:])+"."+sourceKey(srv.URL+"/a/-/a-1.0.0.tgz"))
	bad := []byte("damaged in the cache")
	if err := os.Chmod(entry, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(entry, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	srv.files["/a/-/a-1.0.0.tgz"] = bad
	_, err := Ingest(context.Background(), src, []Spec{{Kind: Npm, Path: "web"}}, t.TempDir(), opts)
	var me *MismatchError
	if !errors.As(err, &me) || me.Got != sri(bad) {
		t.Fatalf("err = %v, want a *MismatchError for the damaged bytes", err)
	}
	// With the registry right again, the entry is replaced by checked bytes.
	srv.files["/a/-/a-1.0.0.tgz"] = good
	tree := t.TempDir()
	if _, err := Ingest(context.Background(), src, []Spec{{Kind: Npm, Path: "web"}}, tree, opts); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(contentPath(filepath.Join(tree, NpmCacheDir, "_cacache"), sum[:])); err != nil || !bytes.Equal(b, good) {
		t.Errorf("tree content after repair: %q, %v", b, err)
	}
}

func TestNpmNoLockFile(t *testing.T) {
	_, err := Ingest(context.Background(), fstest.MapFS{"web/package.json": {Data: []byte("{}")}}, []Spec{{Kind: Npm, Path: "web"}}, t.TempDir(), Options{Cache: t.TempDir()})
	var ie *InputError
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), `"web" have no package-lock.json`) {
		t.Fatalf("err = %v, want an *InputError about the missing package-lock.json", err)
	}
}

// TestNpmCIOffline ingests a small real project (from registry.npmjs.org) and installs it with the host's npm ci
// as an unprivileged uid, from a read-only tree, with the task environment only, in a network namespace of its
// own with no interface up. Once for a lock without "resolved" (as npm writes it here,
// omit-lockfile-registry-resolved) and once with.
func TestNpmCIOffline(t *testing.T) {
	needNpm(t)
	for _, resolved := range []bool{false, true} {
		t.Run(fmt.Sprintf("resolved=%t", resolved), func(t *testing.T) {
			project, err := os.ReadFile("testdata/npm-good/package.json")
			if err != nil {
				t.Fatal(err)
			}
			lock, err := os.ReadFile("testdata/npm-good/package-lock.json")
			if err != nil {
				t.Fatal(err)
			}
			if resolved {
				lock = withResolved(t, lock, "https://registry.npmjs.org/")
			}
			run, got := npmCI(t, project, lock, "https://registry.npmjs.org/", false)
			var names []string
			for _, d := range got {
				names = append(names, d.URI)
			}
			want := "pkg:npm/%40sindresorhus/is@4.6.0 pkg:npm/is-number@6.0.0 pkg:npm/is-number@7.0.0 pkg:npm/is-odd@3.0.1 pkg:npm/left-pad@1.3.0"
			if strings.Join(names, " ") != want {
				t.Fatalf("ingested %s, want %s", strings.Join(names, " "), want)
			}
			// The packages are installed, nested versions included, and work.
			check := exec.Command("node", "-e", `const isOdd = require("is-odd"), is = require("@sindresorhus/is");
if (!isOdd(3) || isOdd(4) || !is.string("x")) process.exit(1);
console.log(require("is-number/package.json").version, require("is-odd/node_modules/is-number/package.json").version, require("left-pad")("x", 3))`)
			check.Dir = run
			out, err := check.CombinedOutput()
			if err != nil || strings.TrimSpace(string(out)) != "7.0.0 6.0.0   x" {
				t.Fatalf("using the installed packages: %v: %q", err, out)
			}
		})
	}
}

// TestNpmScripts: a package's install script runs only when the task opts in.
func TestNpmScripts(t *testing.T) {
	needNpm(t)
	tgz := tarGz(t, map[string]string{
		"package/package.json": `{"name": "hook", "version": "1.0.0", "scripts": {"install": "node -e \"require('fs').writeFileSync('ran.txt', 'ran')\""}}`,
		"package/index.js":     "module.exports = 1\n",
	})
	srv := newNpmServer(t, map[string][]byte{"/hook/-/hook-1.0.0.tgz": tgz})
	project := []byte(`{"name": "p", "version": "1.0.0", "dependencies": {"hook": "1.0.0"}}`)
	lock := lockJSON(t, 3, map[string]map[string]any{
		"":                  {"name": "p", "version": "1.0.0", "dependencies": map[string]string{"hook": "1.0.0"}},
		"node_modules/hook": {"version": "1.0.0", "integrity": sri(tgz), "hasInstallScript": true},
	})
	for _, scripts := range []bool{false, true} {
		t.Run(fmt.Sprintf("scripts=%t", scripts), func(t *testing.T) {
			run, _ := npmCI(t, project, lock, srv.URL, scripts)
			_, err := os.Stat(filepath.Join(run, "node_modules", "hook", "ran.txt"))
			if ran := err == nil; ran != scripts {
				t.Errorf("the install script ran: %t, want %t", ran, scripts)
			}
		})
	}
}

func needNpm(t *testing.T) {
	t.Helper()
	for _, c := range []string{"npm", "node", "setpriv"} {
		if _, err := exec.LookPath(c); err != nil {
			t.Skipf("%s is not installed", c)
		}
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: runs npm as another uid")
	}
}

// npmCI ingests a project's lock file (fetching from registry) into a tree, makes the tree read-only, and runs the
// host's npm ci in a copy of the project as a task would: as an unprivileged uid, with the task's environment only
// and, where unshare is installed, in a network namespace of its own with no interface up. It checks that npm
// left the tree as it was, and returns the project's directory and what was ingested.
func npmCI(t *testing.T, project, lock []byte, registry string, scripts bool) (string, []Dependency) {
	t.Helper()
	// Directories others can enter: npm runs as nobody.
	work := t.TempDir()
	for _, d := range []string{filepath.Dir(work), work} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	tree, tmp, run := filepath.Join(work, "tree"), filepath.Join(work, "tmp"), filepath.Join(work, "run")
	for _, d := range []string{tree, tmp, run} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	src := fstest.MapFS{"package.json": {Data: project}, "package-lock.json": {Data: lock}}
	got, err := Ingest(context.Background(), src, []Spec{{Kind: Npm, Path: "."}}, tree, Options{Cache: filepath.Join(work, "cache"), NpmRegistry: registry})
	if err != nil {
		t.Fatal(err)
	}
	if err := exec.Command("chmod", "-R", "a-w", tree).Run(); err != nil {
		t.Fatal(err)
	}
	before := listTree(t, tree)

	const nobody = 65534
	if err := PrepareNpmCache(tree, tmp, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"package.json": project, "package-lock.json": lock} {
		if err := os.WriteFile(filepath.Join(run, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(run, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	node, _ := exec.LookPath("node")
	npm, _ := exec.LookPath("npm")
	env := append([]string{"PATH=" + filepath.Dir(node) + ":/usr/bin:/bin", "HOME=" + tmp}, npmEnvFor(filepath.Join(tmp, ".npm"), scripts)...)
	args := []string{"--reuid", "65534", "--regid", "65534", "--clear-groups", npm, "ci"}
	cmd := exec.Command("setpriv", args...)
	if _, err := exec.LookPath("unshare"); err == nil {
		cmd = exec.Command("unshare", append([]string{"--net", "setpriv"}, args...)...)
	}
	cmd.Dir, cmd.Env = run, env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("npm ci: %v\n%s", err, out)
	}
	t.Logf("npm ci:\n%s", out)
	if after := listTree(t, tree); after != before {
		t.Errorf("npm changed the tree:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	return run, got
}

// tarGz is a gzipped tar of files, as npm packs a package.
func tarGz(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(files[n])), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(files[n])); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// withResolved adds to every package of a lock the "resolved" URL npm would have written.
func withResolved(t *testing.T, lock []byte, registry string) []byte {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(lock, &doc); err != nil {
		t.Fatal(err)
	}
	for key, e := range doc["packages"].(map[string]any) {
		if key == "" {
			continue
		}
		m := e.(map[string]any)
		name := key[strings.LastIndex(key, "node_modules/")+len("node_modules/"):]
		m["resolved"] = npmTarballURL(registry, name, m["version"].(string))
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// listTree is every path under dir with its mode, size and sha256.
func listTree(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		sum := ""
		if fi.Mode().IsRegular() {
			c, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			h := sha256.Sum256(c)
			sum = hex.EncodeToString(h[:8])
		}
		fmt.Fprintf(&b, "%s %v %d %s\n", strings.TrimPrefix(p, dir), fi.Mode(), fi.Size(), sum)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func FuzzParseNpmLock(f *testing.F) {
	for _, p := range []string{"testdata/npm-good/package-lock.json"} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"lockfileVersion":3,"packages":{"node_modules/x":{"name":"@a/b","version":"1.0.0","integrity":"sha512-AAAA sha1-BBBB","resolved":"git+https://x"}}}`))
	f.Add([]byte(`{"lockfileVersion":2,"packages":{"a/node_modules/b":{"version":"1","inBundle":true},"xnode_modules/c":{},"node_modules/a/xnode_modules/d":{}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		pkgs, err := parseNpmLock(b, "package-lock.json", "https://reg.example/")
		if err != nil {
			var ie *InputError
			if !errors.As(err, &ie) {
				t.Fatalf("err = %v, not an *InputError", err)
			}
			return
		}
		for _, p := range pkgs {
			if !npmNameRE.MatchString(p.Name) || !npmVersionRE.MatchString(p.Version) || len(p.Sum) != sha512.Size ||
				!strings.HasPrefix(p.URL, "http") || p.Integrity != "sha512-"+base64.StdEncoding.EncodeToString(p.Sum) {
				t.Fatalf("accepted %+v", p)
			}
		}
	})
}

// TestNpmTwoLockFiles: two lock files of one build share the tree's npm cache; a package both pin, in different
// versions, has one packument listing both.
func TestNpmTwoLockFiles(t *testing.T) {
	src, srv, tarballs := fakeNpm(t)
	src["other/package-lock.json"] = &fstest.MapFile{Data: lockJSON(t, 2, map[string]map[string]any{
		"node_modules/@s/b": {"version": "1.0.0", "integrity": sri(tarballs["/@s/b/-/b-1.0.0.tgz"])},
		"node_modules/a":    {"version": "1.0.0", "integrity": sri(tarballs["/a/-/a-1.0.0.tgz"])},
	})}
	srv.files["/a/-/a-2.0.0.tgz"] = []byte("tarball of a 2.0.0")
	src["web/package-lock.json"] = &fstest.MapFile{Data: lockJSON(t, 3, map[string]map[string]any{
		"node_modules/a": {"version": "2.0.0", "integrity": sri(srv.files["/a/-/a-2.0.0.tgz"])},
	})}
	tree := t.TempDir()
	got, err := Ingest(context.Background(), src, []Spec{{Kind: Npm, Path: "other"}, {Kind: Npm, Path: "web"}}, tree, Options{Cache: t.TempDir(), NpmRegistry: srv.URL, Concurrency: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[2].Spec != 1 || got[2].Name != "a" || got[2].Version != "2.0.0" {
		t.Fatalf("dependencies = %+v", got)
	}
	b, err := readIndexEntry(filepath.Join(tree, NpmCacheDir, "_cacache"), npmTaskRegistry+"a")
	if err != nil {
		t.Fatal(err)
	}
	var doc npmPackument
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Versions) != 2 || doc.Versions["1.0.0"].Dist.Integrity != sri(tarballs["/a/-/a-1.0.0.tgz"]) || doc.Versions["2.0.0"].Dist.Integrity != sri(srv.files["/a/-/a-2.0.0.tgz"]) {
		t.Errorf("packument of a: %s", b)
	}
}

// TestNpmShrinkwrap: npm ci installs from npm-shrinkwrap.json when there is one, so that is the lock ssf reads.
func TestNpmShrinkwrap(t *testing.T) {
	src, srv, tarballs := fakeNpm(t)
	src["web/npm-shrinkwrap.json"] = &fstest.MapFile{Data: lockJSON(t, 3, map[string]map[string]any{
		"node_modules/a": {"version": "1.0.0", "integrity": sri(tarballs["/a/-/a-1.0.0.tgz"])},
	})}
	got, err := Ingest(context.Background(), src, []Spec{{Kind: Npm, Path: "web"}}, t.TempDir(), Options{Cache: t.TempDir(), NpmRegistry: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Name != "a" {
		t.Fatalf("dependencies = %+v, want only a, from npm-shrinkwrap.json", got)
	}
}
