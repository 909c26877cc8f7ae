package deps

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/dirhash"
	modzip "golang.org/x/mod/zip"
)

// The tests fetch from a real Go module proxy: $GOPROXY's first http(s) entry, else proxy.golang.org.
func testGoProxy(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("fetches from the Go module proxy; not in -short")
	}
	if p, err := goProxyURL(os.Getenv("GOPROXY")); err == nil {
		return p
	}
	return "https://proxy.golang.org"
}

// sharedCache is one download cache for the tests that only need some cache, so the proxy is asked once per file.
var sharedCache string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ssf-deps-cache-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sharedCache = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// countingTransport counts the requests that reach the network.
type countingTransport struct{ n atomic.Int64 }

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return http.DefaultTransport.RoundTrip(r)
}

// offlineTransport fails every request.
type offlineTransport struct{}

func (offlineTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return nil, fmt.Errorf("test: no network for %s", r.URL)
}

func ingestGomod(t *testing.T, src fs.FS, cache string, client *http.Client) ([]Dependency, string, error) {
	t.Helper()
	tree := t.TempDir()
	deps, err := Ingest(context.Background(), src, []Spec{{Kind: Gomod, Path: "."}}, tree,
		Options{Cache: cache, GoProxy: testGoProxy(t) + ",direct", Client: client})
	return deps, tree, err
}

// goBuildOffline copies the project at dir to a fresh directory and runs the host's go build there with only the
// environment goEnv gives a task (GOPROXY pointing at tree's GOPROXY directory), an empty module cache and no other
// source of modules, then runs the program and returns what it printed.
func goBuildOffline(t *testing.T, dir, tree string) string {
	t.Helper()
	out, err := tryGoBuildOffline(t, dir, tree)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func tryGoBuildOffline(t *testing.T, dir, tree string) (string, error) {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on this machine")
	}
	work := t.TempDir()
	if err := os.CopyFS(filepath.Join(work, "src"), os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	home := filepath.Join(work, "home")
	modcache := filepath.Join(work, "modcache")
	// The module cache's files are read-only; make them removable again.
	t.Cleanup(func() { makeWritable(modcache) })
	gocache, _ := exec.Command(gobin, "env", "GOCACHE").Output()
	env := []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + home, "GOENV=off", "CGO_ENABLED=0",
		// The compiled standard library only; nothing of it resolves modules.
		"GOCACHE=" + strings.TrimSpace(string(gocache)),
	}
	for _, kv := range goEnvFor("file://" + filepath.Join(tree, GoProxyDir)) {
		if strings.HasPrefix(kv, "GOMODCACHE=") {
			kv = "GOMODCACHE=" + modcache
		}
		env = append(env, kv)
	}
	bin := filepath.Join(work, "prog")
	cmd := exec.Command(gobin, "build", "-o", bin, ".")
	cmd.Dir, cmd.Env = filepath.Join(work, "src"), env
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build with only the task's environment %q: %v\n%s", env, err, out)
	}
	out, err := exec.Command(bin).Output()
	if err != nil {
		return "", fmt.Errorf("running the program: %v", err)
	}
	return string(out), nil
}

func makeWritable(dir string) {
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(p, 0o755)
		}
		return nil
	})
}

type wantDep struct {
	name, version string
	modOnly       bool
}

func summarize(deps []Dependency) []wantDep {
	var got []wantDep
	for _, d := range deps {
		got = append(got, wantDep{d.Name, d.Version, d.ModOnly})
	}
	return got
}

func TestGomodIngestBuilds(t *testing.T) {
	tests := []struct {
		dir    string
		want   []wantDep
		output string
	}{
		{
			dir:    "testdata/gomod-uuid",
			want:   []wantDep{{"github.com/google/uuid", "v1.6.0", false}},
			output: "0cafc6af-2f8c-51a9-9e88-204f972c2c91\n",
		},
		{
			// Escaped paths (!burnt!sushi) and a +incompatible version.
			dir: "testdata/gomod-escapes",
			want: []wantDep{
				{"github.com/BurntSushi/toml", "v1.4.0", false},
				{"github.com/dgrijalva/jwt-go", "v3.2.0+incompatible", false},
			},
			output: "1 <nil> HS256\n",
		},
		{
			// A replacement by another module version: that version is fetched and recorded (its go.mod has the
			// same h1 as v1.6.0's, so the cache holds it once).
			dir:    "testdata/gomod-replace",
			want:   []wantDep{{"github.com/google/uuid", "v1.5.0", false}},
			output: "0cafc6af-2f8c-51a9-9e88-204f972c2c91\n",
		},
		{
			// A directory replacement fetches nothing; the module it requires is fetched as usual.
			dir:    "testdata/gomod-local",
			want:   []wantDep{{"github.com/google/uuid", "v1.6.0", false}},
			output: "",
		},
		{
			// testify v1.7.0 says go 1.13: the graph below it is unpruned.
			dir: "testdata/gomod-unpruned",
			want: []wantDep{
				{"github.com/davecgh/go-spew", "v1.1.0", false},
				{"github.com/pmezard/go-difflib", "v1.0.0", false},
				{"github.com/stretchr/objx", "v0.1.0", true},
				{"github.com/stretchr/testify", "v1.7.0", false},
				{"gopkg.in/check.v1", "v0.0.0-20161208181325-20d25e280405", true},
				{"gopkg.in/yaml.v3", "v3.0.0-20200313102051-9f266ea9e77c", false},
			},
			output: "true\n",
		},
		{
			// A main module at go 1.16: the whole build list's zips that go.sum pins.
			dir: "testdata/gomod-old",
			want: []wantDep{
				{"github.com/davecgh/go-spew", "v1.1.0", false},
				{"github.com/pmezard/go-difflib", "v1.0.0", false},
				{"github.com/stretchr/objx", "v0.1.0", true},
				{"github.com/stretchr/testify", "v1.7.0", false},
				{"gopkg.in/check.v1", "v0.0.0-20161208181325-20d25e280405", false},
				{"gopkg.in/yaml.v3", "v3.0.0-20200313102051-9f266ea9e77c", false},
			},
			output: "true\n",
		},
	}
	for _, tt := range tests {
		t.Run(filepath.Base(tt.dir), func(t *testing.T) {
			deps, tree, err := ingestGomod(t, os.DirFS(tt.dir), sharedCache, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := summarize(deps); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("dependencies:\n got %v\nwant %v", got, tt.want)
			}
			for _, d := range deps {
				checkDependency(t, tree, d)
			}
			out := goBuildOffline(t, tt.dir, tree)
			// The build had no other source of modules: without the tree, it fails.
			if _, err := tryGoBuildOffline(t, tt.dir, t.TempDir()); err == nil {
				t.Error("go build succeeded without the ingested modules: the test's environment leaks another source")
			}
			if tt.output != "" && out != tt.output {
				t.Errorf("the program printed %q, want %q", out, tt.output)
			}
		})
	}
}

// checkDependency checks a Dependency's record against the file laid out in tree.
func checkDependency(t *testing.T, tree string, d Dependency) {
	t.Helper()
	if d.Kind != Gomod || d.URI != "pkg:golang/"+d.Name+"@"+strings.ReplaceAll(d.Version, "+", "%2B") {
		t.Errorf("%s@%s: kind %q, uri %q", d.Name, d.Version, d.Kind, d.URI)
	}
	ext := ".zip"
	if d.ModOnly {
		ext = ".mod"
	}
	// The proxy protocol's escaping: a capital letter is ! and its lower case.
	ep, _ := module.EscapePath(d.Name)
	if !strings.HasSuffix(d.URL, "/"+ep+"/@v/"+d.Version+ext) || !strings.HasPrefix(d.Pin, "h1:") {
		t.Errorf("%s@%s: url %q, pin %q", d.Name, d.Version, d.URL, d.Pin)
	}
	p := filepath.Join(tree, GoProxyDir, ep, "@v", d.Version+ext)
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if got := digest.FromBytes(data); got != d.Digest {
		t.Errorf("%s: digest %s, the record says %s", p, got, d.Digest)
	}
	if info, err := os.ReadFile(filepath.Join(tree, GoProxyDir, ep, "@v", d.Version+".info")); err != nil || string(info) != fmt.Sprintf("{\"Version\":%q}\n", d.Version) {
		t.Errorf("%s@%s: .info %q, %v", d.Name, d.Version, info, err)
	}
}

const (
	uuidMod    = "module example.com/x\n\ngo 1.22\n\nrequire github.com/google/uuid v1.6.0\n"
	uuidZipH1  = "h1:NIvaJDMOsjHA8n1jAhLSgzrAzy1Hgr+hNrb57e+94F0="
	uuidModH1  = "h1:TIyPZe4MgqvfeYDBFedMoGGpEw/LqOeaOT+nhxU+yHo="
	otherH1    = "h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
	uuidSumZip = "github.com/google/uuid v1.6.0 " + uuidZipH1 + "\n"
	uuidSumMod = "github.com/google/uuid v1.6.0/go.mod " + uuidModH1 + "\n"
)

func TestGomodRefuses(t *testing.T) {
	src := func(mod, sum string) fstest.MapFS {
		fsys := fstest.MapFS{}
		if mod != "" {
			fsys["go.mod"] = &fstest.MapFile{Data: []byte(mod)}
		}
		if sum != "" {
			fsys["go.sum"] = &fstest.MapFile{Data: []byte(sum)}
		}
		return fsys
	}
	tests := []struct {
		name     string
		src      fstest.MapFS
		proxy    string // "" means the test proxy
		mismatch *MismatchError
		input    []string // an *InputError with all of these in its message
	}{
		{
			name:     "changed zip hash",
			src:      src(uuidMod, strings.Replace(uuidSumZip, uuidZipH1, otherH1, 1)+uuidSumMod),
			mismatch: &MismatchError{What: "module github.com/google/uuid@v1.6.0 (zip)", Want: otherH1, Got: uuidZipH1},
		},
		{
			name:     "changed go.mod hash",
			src:      src(uuidMod, uuidSumZip+strings.Replace(uuidSumMod, uuidModH1, otherH1, 1)),
			mismatch: &MismatchError{What: "module github.com/google/uuid@v1.6.0 (go.mod)", Want: otherH1, Got: uuidModH1},
		},
		{
			name:  "module missing from go.sum",
			src:   src(uuidMod, "\n"),
			input: []string{"module github.com/google/uuid@v1.6.0", "go.sum has no hash", "go mod tidy"},
		},
		{
			name:  "zip hash missing from go.sum",
			src:   src(uuidMod, uuidSumMod),
			input: []string{"module github.com/google/uuid@v1.6.0", "no hash for its zip", "go.sum is the lock"},
		},
		{
			name:  "malformed go.sum line",
			src:   src(uuidMod, uuidSumZip+"github.com/google/uuid v1.6.0/go.mod\n"),
			input: []string{"go.sum:2:", "2 fields instead of 3", "go mod tidy"},
		},
		{
			name:  "no go.mod",
			src:   src("", uuidSumZip),
			input: []string{"no go.mod"},
		},
		{
			name:  "no go.sum",
			src:   src(uuidMod, ""),
			input: []string{"no go.sum", "go mod tidy"},
		},
		{
			name:  "malformed go.mod",
			src:   src("module example.com/x\n\nrequire github.com/google/uuid 1.6\n", uuidSumZip+uuidSumMod),
			input: []string{"go.mod:3:"},
		},
		{
			name:  "directory replacement outside the source",
			src:   src(uuidMod+"replace github.com/google/uuid => ../uuid\n", uuidSumZip+uuidSumMod),
			input: []string{"replace github.com/google/uuid@v1.6.0 => ../uuid", "outside the source"},
		},
		{
			name:  "no http proxy",
			src:   src(uuidMod, uuidSumZip+uuidSumMod),
			proxy: "direct",
			input: []string{"goproxy", "config.yaml"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			proxy := tt.proxy
			if proxy == "" {
				proxy = testGoProxy(t)
			}
			tree := t.TempDir()
			_, err := Ingest(context.Background(), tt.src, []Spec{{Kind: Gomod, Path: "."}}, tree,
				Options{Cache: sharedCache, GoProxy: proxy})
			if err == nil {
				t.Fatal("ingested")
			}
			if tt.mismatch != nil {
				var me *MismatchError
				if !errors.As(err, &me) || me.What != tt.mismatch.What || me.Want != tt.mismatch.Want || me.Got != tt.mismatch.Got || !strings.HasPrefix(me.Pinned, "go.sum:") || !strings.HasPrefix(me.URL, "https://") {
					t.Fatalf("error %v (%T), want %v", err, err, tt.mismatch)
				}
			} else {
				var ie *InputError
				if !errors.As(err, &ie) {
					t.Fatalf("error %v (%T), want an *InputError", err, err)
				}
				for _, s := range tt.input {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not say %q", err, s)
					}
				}
			}
			// Nothing is offered to a task when ingestion fails.
			if entries, _ := os.ReadDir(tree); len(entries) != 0 {
				t.Errorf("the tree holds %v after a failed ingestion", entries)
			}
		})
	}
}

// A damaged cache entry is never used: the next ingestion fetches the file again and lays out checked bytes.
func TestGomodCacheHitReverified(t *testing.T) {
	cache := t.TempDir()
	src := os.DirFS("testdata/gomod-uuid")
	deps, _, err := ingestGomod(t, src, cache, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Well-formed but different: a module zip of uuid@v1.6.0 that follows every zip rule, and a go.mod that
	// parses; only their hashes tell them from the real ones.
	var zipBuf bytes.Buffer
	uuid := module.Version{Path: "github.com/google/uuid", Version: "v1.6.0"}
	if err := modzip.Create(&zipBuf, uuid, []modzip.File{memFile{"uuid.go", "package uuid\n\nfunc Tampered() {}\n"}}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct {
		key  string
		data []byte
	}{
		{goFileKey(goFile{uuid, "zip"}, uuidZipH1), zipBuf.Bytes()},
		{h1Key(uuidModH1, "mod"), []byte("module github.com/google/uuid\n\nrequire example.com/evil v1.0.0\n")},
	} {
		p := filepath.Join(cache, filepath.FromSlash(f.key))
		os.Chmod(p, 0o644)
		if err := os.WriteFile(p, f.data, 0o444); err != nil {
			t.Fatal(err)
		}
	}
	ct := &countingTransport{}
	again, tree, err := ingestGomod(t, src, cache, &http.Client{Transport: ct})
	if err != nil {
		t.Fatal(err)
	}
	if ct.n.Load() != 2 {
		t.Errorf("%d downloads after damaging the cached zip and go.mod, want 2", ct.n.Load())
	}
	if !reflect.DeepEqual(again, deps) {
		t.Errorf("second ingestion %+v, first %+v", again, deps)
	}
	checkDependency(t, tree, again[0])
}

// With every file in the cache, ingestion needs no network at all.
func TestGomodWarmCacheOffline(t *testing.T) {
	cache := t.TempDir()
	src := os.DirFS("testdata/gomod-unpruned")
	deps, _, err := ingestGomod(t, src, cache, nil)
	if err != nil {
		t.Fatal(err)
	}
	again, tree, err := ingestGomod(t, src, cache, &http.Client{Transport: offlineTransport{}})
	if err != nil {
		t.Fatalf("warm ingestion reached for the network: %v", err)
	}
	if !reflect.DeepEqual(again, deps) {
		t.Errorf("warm ingestion %+v, cold %+v", again, deps)
	}
	goBuildOffline(t, "testdata/gomod-unpruned", tree)
}

func TestGoProxyURL(t *testing.T) {
	tests := []struct{ list, want string }{
		{"https://proxy.golang.org,direct", "https://proxy.golang.org"},
		{"direct|http://127.0.0.1:3000/", "http://127.0.0.1:3000"},
		{"off", ""},
		{"off,https://proxy.golang.org", ""},
		{"", ""},
		{"file:///x", ""},
	}
	for _, tt := range tests {
		got, err := goProxyURL(tt.list)
		if got != tt.want || (tt.want == "") != (err != nil) {
			t.Errorf("goProxyURL(%q) = %q, %v; want %q", tt.list, got, err, tt.want)
		}
	}
}

func TestGolangPURL(t *testing.T) {
	got := golangPURL(module.Version{Path: "github.com/Azure/go-autorest", Version: "v14.2.0+incompatible"})
	if want := "pkg:golang/github.com/Azure/go-autorest@v14.2.0%2Bincompatible"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestParseGoSum(t *testing.T) {
	tests := []struct {
		name, sum string
		err       string // "" means valid
	}{
		{"valid", uuidSumZip + "\n" + uuidSumMod, ""},
		{"crlf and repeated line", strings.ReplaceAll(uuidSumZip+uuidSumZip, "\n", "\r\n"), ""},
		{"four fields", "github.com/google/uuid v1.6.0 " + uuidZipH1 + " x\n", "go.sum:1: 4 fields"},
		{"not h1", "github.com/google/uuid v1.6.0 h2:abc\n", `go.sum:1: "h2:abc" is not an h1: hash`},
		{"short hash", "github.com/google/uuid v1.6.0 h1:AAAA\n", "is not an h1: hash"},
		{"bad version", "github.com/google/uuid 1.6.0 " + uuidZipH1 + "\n", "go.sum:1:"},
		{"bad path", "github.com/google/../uuid v1.6.0 " + uuidZipH1 + "\n", "go.sum:1:"},
		{"two hashes", uuidSumZip + "github.com/google/uuid v1.6.0 " + otherH1 + "\n", "go.sum:2: a second, different hash for github.com/google/uuid v1.6.0 (line 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseGoSum("go.sum", []byte(tt.sum))
			if tt.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var ie *InputError
			if !errors.As(err, &ie) || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("error %v, want an *InputError saying %q", err, tt.err)
			}
		})
	}
}

func FuzzParseGoSum(f *testing.F) {
	f.Add([]byte(uuidSumZip + uuidSumMod))
	f.Add([]byte("a v1.0.0 h1:x\n\n b"))
	f.Add([]byte("gopkg.in/yaml.v3 v3.0.0-20200313102051-9f266ea9e77c/go.mod " + otherH1))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := parseGoSum("go.sum", data)
		if err != nil {
			var ie *InputError
			if !errors.As(err, &ie) || !strings.HasPrefix(err.Error(), "go.sum:") {
				t.Fatalf("error %v (%T): want an *InputError starting with go.sum:LINE", err, err)
			}
			return
		}
		for _, table := range []map[module.Version]sumLine{s.zip, s.mod} {
			for m, l := range table {
				if !validH1(l.h1) || m.Version == "" || l.line < 1 || h1Key(l.h1, "zip") == "" {
					t.Fatalf("accepted %v %+v", m, l)
				}
			}
		}
	})
}

// hashZip is checked against the reference, dirhash.HashZip, on every zip the tests fetched.
func TestHashZipMatchesDirhash(t *testing.T) {
	if _, _, err := ingestGomod(t, os.DirFS("testdata/gomod-unpruned"), sharedCache, nil); err != nil {
		t.Fatal(err)
	}
	zips, _ := filepath.Glob(filepath.Join(sharedCache, "gomod", "h1", "*.zip"))
	if len(zips) == 0 {
		t.Fatal("no zips in the cache")
	}
	for _, z := range zips {
		want, err := dirhash.HashZip(z, dirhash.Hash1)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := hashZip(z); got != want || err != nil {
			t.Errorf("%s: hashZip %s, %v; dirhash.HashZip %s", z, got, err, want)
		}
	}
}

// memFile is a file for modzip.Create.
type memFile struct{ name, data string }

func (f memFile) Path() string                 { return f.name }
func (f memFile) Lstat() (os.FileInfo, error)  { return memFileInfo{f}, nil }
func (f memFile) Open() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(f.data)), nil }

type memFileInfo struct{ f memFile }

func (i memFileInfo) Name() string       { return filepath.Base(i.f.name) }
func (i memFileInfo) Size() int64        { return int64(len(i.f.data)) }
func (i memFileInfo) Mode() fs.FileMode  { return 0o644 }
func (i memFileInfo) ModTime() time.Time { return time.Time{} }
func (i memFileInfo) IsDir() bool        { return false }
func (i memFileInfo) Sys() any           { return nil }

// A zip whose h1 go.sum pins is still refused when it breaks the module zip rules (here: a file outside the
// module's directory, which unpacking would write outside it), as the go command would refuse it.
func TestGomodRefusesZipBreakingRules(t *testing.T) {
	var zipBuf bytes.Buffer
	zw := zip.NewWriter(&zipBuf)
	for _, name := range []string{"example.com/bad@v1.0.0/go.mod", "example.com/bad@v1.0.0/../../escape.go"} {
		w, err := zw.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, "module example.com/bad\n")
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	goMod := []byte("module example.com/bad\n")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/example.com/bad/@v/v1.0.0.mod":
			w.Write(goMod)
		case "/example.com/bad/@v/v1.0.0.zip":
			w.Write(zipBuf.Bytes())
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	zp := filepath.Join(t.TempDir(), "bad.zip")
	if err := os.WriteFile(zp, zipBuf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	zipH1, err := dirhash.HashZip(zp, dirhash.Hash1)
	if err != nil {
		t.Fatal(err)
	}
	modH1, _ := goModHash(goMod)
	src := fstest.MapFS{
		"go.mod": {Data: []byte("module example.com/x\n\ngo 1.22\n\nrequire example.com/bad v1.0.0\n")},
		"go.sum": {Data: []byte("example.com/bad v1.0.0 " + zipH1 + "\nexample.com/bad v1.0.0/go.mod " + modH1 + "\n")},
	}
	tree := t.TempDir()
	_, err = Ingest(context.Background(), src, []Spec{{Kind: Gomod, Path: "."}}, tree,
		Options{Cache: t.TempDir(), GoProxy: srv.URL})
	if err == nil || !strings.Contains(err.Error(), "module example.com/bad@v1.0.0 (zip): breaks the module zip rules") {
		t.Fatalf("error %v, want the zip refused for breaking the module zip rules", err)
	}
	if entries, _ := os.ReadDir(tree); len(entries) != 0 {
		t.Errorf("the tree holds %v after a failed ingestion", entries)
	}
}

// Two gomod specs of one source (a repository with two modules) share the tree; a module both need is laid out
// once, and each spec's dependencies are recorded.
func TestGomodTwoSpecsShareTheTree(t *testing.T) {
	tree := t.TempDir()
	deps, err := Ingest(context.Background(), os.DirFS("testdata"), []Spec{{Kind: Gomod, Path: "gomod-uuid"}, {Kind: Gomod, Path: "gomod-local"}}, tree,
		Options{Cache: sharedCache, GoProxy: testGoProxy(t)})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range deps {
		got = append(got, fmt.Sprintf("%d %s@%s", d.Spec, d.Name, d.Version))
		checkDependency(t, tree, d)
	}
	if want := []string{"0 github.com/google/uuid@v1.6.0", "1 github.com/google/uuid@v1.6.0"}; !reflect.DeepEqual(got, want) {
		t.Errorf("dependencies %q, want %q", got, want)
	}
	goBuildOffline(t, "testdata/gomod-local", tree)
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://user:token@proxy.example/github.com/google/uuid/@v/v1.6.0.zip": "https://proxy.example/github.com/google/uuid/@v/v1.6.0.zip",
		"https://proxy.golang.org/x/@v/v1.0.0.mod":                              "https://proxy.golang.org/x/@v/v1.0.0.mod",
	} {
		if got := redactURL(in); got != want {
			t.Errorf("redactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestGoEnv(t *testing.T) {
	env := Env(map[Kind]bool{Gomod: true}, false)
	for _, want := range []string{"SSF_DEPS=/deps", "GOPROXY=file:///deps/.goproxy", "GOSUMDB=off", "GOFLAGS=-mod=readonly", "GOTOOLCHAIN=local"} {
		if !slices.Contains(env, want) {
			t.Errorf("Env(gomod) = %q, missing %q", env, want)
		}
	}
}

// fakeProxy serves the given modules (each a go.mod and one Go file) by the GOPROXY protocol on a loopback port,
// and returns its URL and the go.sum lines that pin them.
func fakeProxy(t *testing.T, mods map[module.Version]string) (string, string) {
	t.Helper()
	files := map[string][]byte{}
	var sum strings.Builder
	for m, goMod := range mods {
		var zb bytes.Buffer
		if err := modzip.Create(&zb, m, []modzip.File{memFile{"go.mod", goMod}, memFile{"a.go", "package a\n"}}); err != nil {
			t.Fatal(err)
		}
		zp := filepath.Join(t.TempDir(), "m.zip")
		if err := os.WriteFile(zp, zb.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		zipH1, err := dirhash.HashZip(zp, dirhash.Hash1)
		if err != nil {
			t.Fatal(err)
		}
		modH1, _ := goModHash([]byte(goMod))
		files["/"+m.Path+"/@v/"+m.Version+".zip"] = zb.Bytes()
		files["/"+m.Path+"/@v/"+m.Version+".mod"] = []byte(goMod)
		fmt.Fprintf(&sum, "%s %s %s\n%s %s/go.mod %s\n", m.Path, m.Version, zipH1, m.Path, m.Version, modH1)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if b, ok := files[r.URL.Path]; ok {
			w.Write(b)
			return
		}
		http.Error(w, "not found", http.StatusNotFound)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, sum.String()
}

// A go.mod only go.sum names, which the proxy no longer has, is left out; one the build needs is not.
func TestGomodStaleGoSumLine(t *testing.T) {
	proxy, sum := fakeProxy(t, map[module.Version]string{{Path: "example.com/a", Version: "v1.0.0"}: "module example.com/a\n\ngo 1.22\n"})
	gone := "example.com/gone v1.0.0/go.mod " + otherH1 + "\n"
	for _, tt := range []struct {
		name, goMod string
		err         string
	}{
		{"not needed", "module example.com/x\n\ngo 1.22\n\nrequire example.com/a v1.0.0\n", ""},
		{"needed", "module example.com/x\n\ngo 1.22\n\nrequire (\n\texample.com/a v1.0.0\n\texample.com/gone v1.0.0\n)\n", "404"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			src := fstest.MapFS{"go.mod": {Data: []byte(tt.goMod)}, "go.sum": {Data: []byte(sum + gone)}}
			deps, err := Ingest(context.Background(), src, []Spec{{Kind: Gomod, Path: "."}}, t.TempDir(),
				Options{Cache: t.TempDir(), GoProxy: proxy})
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) || !strings.Contains(err.Error(), "example.com/gone@v1.0.0") {
					t.Fatalf("error %v, want one naming example.com/gone@v1.0.0 and %s", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := summarize(deps); !reflect.DeepEqual(got, []wantDep{{"example.com/a", "v1.0.0", false}}) {
				t.Errorf("dependencies %v", got)
			}
		})
	}
}

// Below a dependency whose go.mod says go < 1.17, the go command loads its requirements' go.mod files, so go.sum
// must pin them; below one at go >= 1.17 it does not.
func TestGomodUnprunedNeedsGoModHashes(t *testing.T) {
	b := module.Version{Path: "example.com/b", Version: "v1.0.0"}
	for _, tt := range []struct {
		aGo string
		err string
	}{
		{"1.16", "module example.com/b@v1.0.0 is needed to build example.com/x but go.sum has no hash for its go.mod"},
		{"1.17", ""},
	} {
		t.Run("go "+tt.aGo, func(t *testing.T) {
			proxy, sum := fakeProxy(t, map[module.Version]string{
				{Path: "example.com/a", Version: "v1.0.0"}: "module example.com/a\n\ngo " + tt.aGo + "\n\nrequire example.com/b v1.0.0\n",
				b: "module example.com/b\n\ngo 1.22\n",
			})
			var kept []string
			for _, l := range strings.SplitAfter(sum, "\n") {
				if !strings.HasPrefix(l, "example.com/b ") {
					kept = append(kept, l)
				}
			}
			src := fstest.MapFS{
				"go.mod": {Data: []byte("module example.com/x\n\ngo 1.22\n\nrequire example.com/a v1.0.0\n")},
				"go.sum": {Data: []byte(strings.Join(kept, ""))},
			}
			deps, err := Ingest(context.Background(), src, []Spec{{Kind: Gomod, Path: "."}}, t.TempDir(),
				Options{Cache: t.TempDir(), GoProxy: proxy})
			if tt.err != "" {
				var ie *InputError
				if !errors.As(err, &ie) || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want an *InputError saying %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := summarize(deps); !reflect.DeepEqual(got, []wantDep{{"example.com/a", "v1.0.0", false}}) {
				t.Errorf("dependencies %v", got)
			}
		})
	}
}
