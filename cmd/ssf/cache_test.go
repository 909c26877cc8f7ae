package main

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// cacheTask is a task with one cache at /tmp/c: it reports what the cache held when it started (before), then
// adds a line to it.
const cacheTask = `    - name: build
      caches: [{name: c, path: /tmp/c}]
      steps:
        - name: run
          run: |
            cat /tmp/c/seen > "$SSF_OUTPUTS/before" 2>/dev/null || : > "$SSF_OUTPUTS/before"
            echo "$SSF_PARAM_WORD" >> /tmp/c/seen
      outputs: [before]
`

const wordParam = "    - {name: word, default: one}\n"

// cacheEntry returns the provenance's resolvedDependencies entry of cache c of task build.
func cacheEntry(t *testing.T, p *project) map[string]any {
	t.Helper()
	deps := p.statement()["predicate"].(map[string]any)["buildDefinition"].(map[string]any)["resolvedDependencies"].([]any)
	var found map[string]any
	for _, d := range deps {
		d := d.(map[string]any)
		if d["name"] == "cache/build/c" {
			if found != nil {
				t.Fatalf("cache/build/c recorded twice")
			}
			found = d
		}
	}
	if found == nil {
		t.Fatalf("no resolvedDependencies entry for cache/build/c in %v", deps)
	}
	return found
}

type listedCache struct {
	Key, Pipeline, PipelineFile, Source, Task, Name, Builder, Digest, Invocation, StoredBy string
	Bytes                                                                                  int64
}

// listCaches runs `ssf cache list --output json` and returns the caches of source src.
func listCaches(t *testing.T, tmp, src string) []listedCache {
	t.Helper()
	r := ssf(t, tmp, "cache", "list", "--output", "json")
	if r.code != 0 {
		t.Fatalf("cache list: exit %d\n%s", r.code, r.stderr)
	}
	var doc struct{ Caches []listedCache }
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatalf("cache list --output json: %v\n%s", err, r.stdout)
	}
	var out []listedCache
	for _, c := range doc.Caches {
		if c.Source == src { // the path as given: symlinks are not resolved in a cache's key
			out = append(out, c)
		}
	}
	return out
}

func (p *project) rebuild(extra ...string) result {
	p.t.Helper()
	out, err := os.MkdirTemp(p.dir, "out-") // an empty --out, new for each build
	if err != nil {
		p.t.Fatal(err)
	}
	p.out = out
	r := p.build(extra...)
	if r.code != 0 {
		p.t.Fatalf("build failed (exit %d):\n%s%s", r.code, r.stdout, r.stderr)
	}
	p.assertClean()
	return r
}

// A second build of a pipeline finds what the first left in its cache, and its provenance records the digest of
// exactly what the first stored; another pipeline of the same name over another source does not see it; --no-cache
// gives an empty cache, recorded as disabled, and keeps nothing.
func TestCacheKeptAndRecorded(t *testing.T) {
	p := newProject(t, cacheTask)
	p.paramDef = wordParam
	p.rebuild()
	if got := p.output("before"); got != "" {
		t.Fatalf("first build's cache held %q, want nothing", got)
	}
	e := cacheEntry(t, p)
	if e["annotations"].(map[string]any)["state"] != "empty" || e["digest"].(map[string]any)["sha256"] != emptyTarSHA256() {
		t.Errorf("first build's cache entry = %v, want state empty and the empty tar's digest", e)
	}
	listed := listCaches(t, p.tmp, p.src)
	if len(listed) != 1 || listed[0].Pipeline != "test" || listed[0].Task != "build" || listed[0].Name != "c" || listed[0].Builder != strings.SplitN(builder, "@", 2)[1] {
		t.Fatalf("cache list = %+v, want one cache test/build/c", listed)
	}
	stored := listed[0]

	p.params = []string{"word=two"}
	p.rebuild()
	if got := p.output("before"); got != "one\n" {
		t.Fatalf("second build's cache held %q, want what the first wrote", got)
	}
	e = cacheEntry(t, p)
	ann := e["annotations"].(map[string]any)
	if ann["state"] != "warm" || "sha256:"+e["digest"].(map[string]any)["sha256"].(string) != stored.Digest || ann["path"] != "/tmp/c" ||
		ann["storedBy"] != stored.StoredBy || stored.StoredBy == "" {
		t.Errorf("second build's cache entry = %v, want state warm and the stored digest %s", e, stored.Digest)
	}
	// The digest listed is that of the tar stream stored, now build 2's.
	now := listCaches(t, p.tmp, p.src)
	if len(now) != 1 || now[0].Digest == stored.Digest || now[0].Digest != storedDigest(t, stored.Key) {
		t.Errorf("after build 2 the cache is listed as %+v; want build 2's cache.tar digest", now)
	}

	// Same pipeline name and file contents, another source directory: another cache.
	other := newProject(t, cacheTask)
	other.paramDef = wordParam
	other.rebuild()
	if got := other.output("before"); got != "" {
		t.Errorf("a pipeline of the same name over another source saw the cache: %q", got)
	}

	// --no-cache: empty, recorded as disabled, nothing kept.
	before := oneCache(t, p)
	p.params = []string{"word=three"}
	p.rebuild("--no-cache")
	if got := p.output("before"); got != "" {
		t.Errorf("--no-cache build's cache held %q, want nothing", got)
	}
	e = cacheEntry(t, p)
	if e["annotations"].(map[string]any)["state"] != "disabled" || e["digest"].(map[string]any)["sha256"] != emptyTarSHA256() {
		t.Errorf("--no-cache build's cache entry = %v, want state disabled and the empty tar's digest", e)
	}
	if after := oneCache(t, p); after.Digest != before.Digest {
		t.Errorf("--no-cache build changed the stored cache: %s -> %s", before.Digest, after.Digest)
	}

	// cache rm by key prefix removes it; the next build starts empty.
	if r := ssf(t, p.tmp, "cache", "rm", before.Key[:12]); r.code != 0 || !strings.Contains(r.stdout, "removed "+before.Key[:12]+" test/build/c") {
		t.Fatalf("cache rm: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if left := listCaches(t, p.tmp, p.src); len(left) != 0 {
		t.Errorf("cache rm left %+v", left)
	}
	p.rebuild()
	if got := p.output("before"); got != "" {
		t.Errorf("build after cache rm saw %q, want nothing", got)
	}
}

func TestCacheRmUsage(t *testing.T) {
	needSandbox(t)
	tmp := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"cache", "rm"}, "give --all"},
		{[]string{"cache", "rm", "--all", "x"}, "not both"},
		{[]string{"cache", "rm", "no-such-pipeline"}, `no cache matches "no-such-pipeline"`},
		{[]string{"cache", "rm", "a//b"}, "neither a key prefix"},
		{[]string{"cache", "rm", "--unused-for", "0"}, "give a positive duration"},
		{[]string{"cache", "rm", "--unused-for", "30d"}, "invalid argument"},
		{[]string{"cache", "list", "--output", "yaml"}, "want text or json"},
	} {
		r := ssf(t, tmp, tc.args...)
		if r.code != 2 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("ssf %s: exit %d, stderr %q; want exit 2 naming %q", strings.Join(tc.args, " "), r.code, r.stderr, tc.want)
		}
	}
}

// A task that plants a symlink to /etc/shadow, a fifo, a setuid copy of a program and a link to a directory in its
// cache cannot make the control plane follow, open or keep them: the stored tar holds the symlinks as links (never
// the bytes they point to), no fifo, and no setuid bit; the next build gets the same.
func TestHostileCacheIsNotFollowed(t *testing.T) {
	p := newProject(t, `    - name: build
      caches: [{name: c, path: /tmp/c}]
      steps:
        - name: plant
          run: |
            if [ -e /tmp/c/suid ]; then
              ls -ln /tmp/c > "$SSF_OUTPUTS/seen"
              [ ! -u /tmp/c/suid ] || { echo setuid kept; exit 1; }
              [ ! -e /tmp/c/fifo ] || { echo fifo kept; exit 1; }
              [ -L /tmp/c/shadow ] || { echo link not a link; exit 1; }
            else
              ln -s /etc/shadow /tmp/c/shadow
              ln -s /etc /tmp/c/etc
              mkfifo /tmp/c/fifo
              cp /bin/busybox /tmp/c/suid
              chmod 4755 /tmp/c/suid
              chmod 2755 /tmp/c
              echo first > "$SSF_OUTPUTS/seen"
            fi
      outputs: [seen]
`)
	if r := p.rebuild(); !strings.Contains(r.stderr, "1 fifos, sockets or devices in it were left out") {
		t.Errorf("the first build did not say the fifo was left out:\n%s", r.stderr)
	}
	listed := listCaches(t, p.tmp, p.src)
	if len(listed) != 1 {
		t.Fatalf("cache list = %+v, want one", listed)
	}
	shadow, _ := os.ReadFile("/etc/shadow")
	f, err := os.Open(filepath.Join(homeDir, "cache", "tasks", listed[0].Key, "cache.tar"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	names := map[string]*tar.Header{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names[h.Name] = h
		data, _ := io.ReadAll(tr)
		if len(shadow) > 0 && strings.Contains(string(data), string(shadow)) {
			t.Errorf("the stored cache holds /etc/shadow's bytes under %s", h.Name)
		}
		if h.Mode&0o6000 != 0 {
			t.Errorf("stored %s with mode %o: setuid or setgid kept", h.Name, h.Mode)
		}
		switch h.Typeflag {
		case tar.TypeReg, tar.TypeDir, tar.TypeSymlink:
		default:
			t.Errorf("stored %s as tar type %q", h.Name, h.Typeflag)
		}
	}
	if h := names["shadow"]; h == nil || h.Typeflag != tar.TypeSymlink || h.Linkname != "/etc/shadow" {
		t.Errorf("shadow stored as %+v, want a symlink to /etc/shadow", h)
	}
	if h := names["etc"]; h == nil || h.Typeflag != tar.TypeSymlink {
		t.Errorf("etc stored as %+v, want a symlink", h)
	}
	if _, ok := names["fifo"]; ok {
		t.Errorf("the fifo was stored")
	}
	for n := range names {
		if strings.HasPrefix(n, "etc/") {
			t.Errorf("the control plane descended the link to /etc: stored %s", n)
		}
	}
	p.rebuild()
	if seen := p.output("seen"); !strings.Contains(seen, "shadow -> /etc/shadow") || strings.Contains(seen, "fifo") {
		t.Errorf("second build's cache listing:\n%s", seen)
	}
}

func emptyTarSHA256() string {
	sum := sha256.Sum256(make([]byte, 1024))
	return hex.EncodeToString(sum[:])
}

func storedDigest(t *testing.T, key string) string {
	t.Helper()
	d, _ := fileDigest(t, filepath.Join(homeDir, "cache", "tasks", key, "cache.tar"))
	return d
}

// A cache outside /tmp must be a directory of the builder image (ssf never writes the image): /scratch is one, and
// is kept like any other; a path the image lacks stops the build with exit 2, naming the fix.
func TestCachePathOutsideTmp(t *testing.T) {
	p := newProject(t, strings.Replace(cacheTask, "/tmp/c", "/scratch", -1))
	p.paramDef = wordParam
	p.rebuild()
	p.params = []string{"word=two"}
	p.rebuild()
	if got := p.output("before"); got != "one\n" {
		t.Errorf("second build's cache at /scratch held %q, want what the first wrote", got)
	}

	q := newProject(t, strings.Replace(cacheTask, "/tmp/c", "/no/such/dir", -1))
	q.paramDef = wordParam
	r := q.build()
	if r.code != 2 || !strings.Contains(r.stderr, `cache "c": /no/such/dir is not a directory in the builder image: choose a path under /tmp`) {
		t.Errorf("exit %d, stderr:\n%s\nwant exit 2 naming the path and the fix", r.code, r.stderr)
	}
	if _, err := os.Stat(q.out); !os.IsNotExist(err) {
		t.Errorf("the refused build left %s (stat: %v)", q.out, err)
	}
	q.assertClean()
}

// A cache over a directory the builder image fills (/bin here) is refused before any task runs, naming where it is
// declared: mounted there, it would hide the image's files and hand the next build what a task left instead.
func TestCacheOverImageFilesRefused(t *testing.T) {
	q := newProject(t, strings.Replace(cacheTask, "/tmp/c", "/bin", -1))
	q.paramDef = wordParam
	r := q.build()
	if r.code != 2 || !strings.Contains(r.stderr, `cache "c": /bin holds files of the builder image`) || !regexp.MustCompile(`\.yaml:\d+: task "build"`).MatchString(r.stderr) {
		t.Errorf("exit %d, stderr:\n%s\nwant exit 2 naming the file, line, path and the fix", r.code, r.stderr)
	}
	q.assertClean()
}

// A later task's cache path that the builder image lacks refuses the build before any task runs: the first task's
// step never runs and its cache is not stored by a build that was refused.
func TestCachePathCheckedBeforeAnyTask(t *testing.T) {
	p := newProject(t, `    - name: first
      caches: [{name: c, path: /tmp/c}]
      steps:
        - name: s
          run: echo ran > "$SSF_OUTPUTS/o"
      outputs: [o]
    - name: second
      needs: [first]
      caches: [{name: c, path: /no/such/dir}]
      steps:
        - name: s
          run: echo ran > "$SSF_OUTPUTS/p"
      outputs: [p]
`)
	r := p.build()
	if r.code != 2 || !strings.Contains(r.stderr, `task "second": cache "c": /no/such/dir is not a directory in the builder image`) {
		t.Fatalf("exit %d, stderr:\n%s\nwant exit 2 naming task second's cache path", r.code, r.stderr)
	}
	if strings.Contains(r.stdout+r.stderr, "task first started") {
		t.Errorf("task first ran before the pipeline's cache paths were checked:\n%s%s", r.stdout, r.stderr)
	}
	if left := listCaches(t, p.tmp, p.src); len(left) != 0 {
		t.Errorf("the refused build stored caches: %+v", left)
	}
}

// Two builds of one pipeline at once each get their own copy of the stored cache and both succeed; the store ends
// up as one of them left it, whole (its record and its stream agree), never a mix.
func TestConcurrentBuildsShareNoCacheDirectory(t *testing.T) {
	p := newProject(t, strings.Replace(cacheTask, "          run: |\n", "          run: |\n            sleep 1\n", 1))
	p.paramDef = wordParam
	p.rebuild()
	p.write()
	var wg sync.WaitGroup
	results := make([]result, 2)
	for i, word := range []string{"a", "b"} {
		out, err := os.MkdirTemp(p.dir, "out-")
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			// The default, identity signing: builds take turns on the transparency log only while they sign,
			// so both take their copy of the cache before either stores its own.
			cmd := exec.Command(ssfBin, "build", "-f", p.pipeline, "--source", p.src, "--out", out, "--param", "word="+word)
			cmd.Env = append(os.Environ(), "SSF_HOME="+homeDir, "TMPDIR="+p.tmp)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			results[i] = result{stdout: stdout.String(), stderr: stderr.String()}
			if err != nil {
				results[i].code = -1
			}
			if data, err := os.ReadFile(filepath.Join(out, "before")); err != nil || string(data) != "one\n" {
				results[i].stderr += fmt.Sprintf("\nbefore = %q, %v; want the first build's cache", data, err)
				results[i].code = -1
			}
		}()
	}
	wg.Wait()
	for i, r := range results {
		if r.code != 0 {
			t.Fatalf("concurrent build %d failed:\n%s%s", i, r.stdout, r.stderr)
		}
	}
	p.assertClean()
	listed := listCaches(t, p.tmp, p.src)
	if len(listed) != 1 || listed[0].Digest != storedDigest(t, listed[0].Key) {
		t.Fatalf("after two concurrent builds the cache is %+v, its stream %s", listed, storedDigest(t, listed[0].Key))
	}
	p.params = []string{"word=c"}
	p.rebuild()
	if got := p.output("before"); got != "one\na\n" && got != "one\nb\n" {
		t.Errorf("after two concurrent builds the cache holds %q, want what one of them left", got)
	}
}

// oneCache is the one cache of p's source that cache list shows.
func oneCache(t *testing.T, p *project) listedCache {
	t.Helper()
	listed := listCaches(t, p.tmp, p.src)
	if len(listed) != 1 {
		t.Fatalf("cache list shows %+v for %s, want one cache", listed, p.src)
	}
	return listed[0]
}
