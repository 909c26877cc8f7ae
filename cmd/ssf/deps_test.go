package main

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fileServer serves body at /x.txt on a loopback port until the test ends, and returns its URL and sha256.
func fileServer(t *testing.T, body string) (string, string) {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/x.txt" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	sum := sha256.Sum256([]byte(body))
	return srv.URL + "/x.txt", hex.EncodeToString(sum[:])
}

// resolved returns the provenance's resolvedDependencies whose uri has the prefix.
func (p *project) resolved(prefix string) []map[string]any {
	p.t.Helper()
	var out []map[string]any
	deps := p.statement()["predicate"].(map[string]any)["buildDefinition"].(map[string]any)["resolvedDependencies"].([]any)
	for _, d := range deps {
		m := d.(map[string]any)
		if uri, _ := m["uri"].(string); strings.HasPrefix(uri, prefix) {
			out = append(out, m)
		}
	}
	return out
}

// TestFileDependencyIsOfferedReadOnly: a file dependency reaches the task at $SSF_DEPS/<dest>, read-only, and no
// step can change it or the cache it came from; the provenance records it.
func TestFileDependencyIsOfferedReadOnly(t *testing.T) {
	url, sum := fileServer(t, "dependency bytes\n")
	p := newProject(t, `    - name: use
      steps:
        - name: read
          run: |
            cat "$SSF_DEPS/tools/x.txt" > "$SSF_OUTPUTS/copy.txt"
            test "$SSF_DEPS" = /deps
            if echo tampered >> /deps/tools/x.txt; then echo "wrote the dependency"; exit 1; fi
            if touch /deps/new; then echo "created a file in /deps"; exit 1; fi
            if chmod 666 /deps/tools/x.txt; then echo "changed its mode"; exit 1; fi
            if rm /deps/tools/x.txt; then echo "removed it"; exit 1; fi
            echo read-only
      outputs: [copy.txt]
`)
	p.deps = "    - {type: file, url: '" + url + "', sha256: " + sum + ", dest: tools/x.txt}\n"
	r := p.mustBuild()
	if got := p.output("copy.txt"); got != "dependency bytes\n" {
		t.Errorf("the task read %q from the dependency", got)
	}
	if !strings.Contains(r.stderr, "[use/read] read-only") {
		t.Errorf("step output:\n%s", r.stderr)
	}
	deps := p.resolved(url)
	if len(deps) != 1 || deps[0]["digest"].(map[string]any)["sha256"] != sum || deps[0]["name"] != "tools/x.txt" ||
		deps[0]["downloadLocation"] != url {
		t.Errorf("resolvedDependencies for the file = %v", deps)
	}
	// Cached under the pin and the URL it came from: sha256/<hex>.<hash of the URL>.
	all, _ := filepath.Glob(filepath.Join(homeDir, "cache", "deps", "sha256", sum+".*"))
	var matches []string
	for _, m := range all {
		if !strings.HasSuffix(m, ".sha256") { // the record of the entry's checked sha256, beside it
			matches = append(matches, m)
		}
	}
	if len(matches) != 1 {
		t.Fatalf("cache entries for the file: %q, want one", matches)
	}
	data, err := os.ReadFile(matches[0])
	if err != nil || string(data) != "dependency bytes\n" {
		t.Errorf("the cache holds %q (%v), want the dependency's bytes unchanged", data, err)
	}
}

// TestFileDependencyWithWrongSHA256FailsTheBuild: bytes that are not what the pipeline pins stop the build before
// any task runs, naming the file and both hashes, and nothing is signed.
func TestFileDependencyWithWrongSHA256FailsTheBuild(t *testing.T) {
	url, sum := fileServer(t, "the real bytes\n")
	wrong := strings.Repeat("ab", 32)
	p := newProject(t, `    - name: use
      steps: [{name: s, run: 'echo task ran; touch "$SSF_OUTPUTS/o"'}]
      outputs: [o]
`)
	p.deps = "    - {type: file, url: '" + url + "', sha256: " + wrong + ", dest: x.txt}\n"
	r := p.mustFail(`file "x.txt"`, wrong, sum)
	if strings.Contains(r.stderr, "task ran") {
		t.Errorf("a task ran though a dependency failed its check:\n%s", r.stderr)
	}
}

// goProject is a source with a go.mod requiring github.com/google/uuid and the given go.sum.
func goProject(t *testing.T, gosum string) *project {
	p := newProject(t, `    - name: build
      steps: [{name: s, run: 'echo task ran; touch "$SSF_OUTPUTS/o"'}]
      outputs: [o]
`)
	p.files["go.mod"] = "module example.com/x\n\ngo 1.22\n\nrequire github.com/google/uuid v1.6.0\n"
	p.files["go.sum"] = gosum
	p.deps = "    - {type: gomod, path: .}\n"
	return p
}

const (
	uuidZipH1 = "h1:NIvaJDMOsjHA8n1jAhLSgzrAzy1Hgr+hNrb57e+94F0="
	uuidModH1 = "h1:TIyPZe4MgqvfeYDBFedMoGGpEw/LqOeaOT+nhxU+yHo="
)

// TestGoSumWithChangedHashFailsTheBuild: a go.sum whose h1 differs from the module the proxy serves stops the
// build naming the module and both hashes; go.sum is never extended or trusted over the bytes.
func TestGoSumWithChangedHashFailsTheBuild(t *testing.T) {
	changed := "h1:AAAAJDMOsjHA8n1jAhLSgzrAzy1Hgr+hNrb57e+94F0="
	p := goProject(t, "github.com/google/uuid v1.6.0 "+changed+"\ngithub.com/google/uuid v1.6.0/go.mod "+uuidModH1+"\n")
	r := p.mustFail("github.com/google/uuid@v1.6.0", changed, uuidZipH1)
	if strings.Contains(r.stderr, "task ran") {
		t.Errorf("a task ran:\n%s", r.stderr)
	}
}

// TestModuleMissingFromGoSumIsRefused: go.sum is the lock; a module go.mod needs but go.sum does not pin is bad
// input (exit 2), named.
func TestModuleMissingFromGoSumIsRefused(t *testing.T) {
	p := goProject(t, "github.com/google/uuid v1.6.0/go.mod "+uuidModH1+"\n")
	r := p.build()
	if r.code != 2 || !strings.Contains(r.stderr, "github.com/google/uuid@v1.6.0") || !strings.Contains(r.stderr, "go.sum") {
		t.Fatalf("exit %d, want 2 naming the module and go.sum:\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat(p.out); !os.IsNotExist(err) {
		t.Errorf("a refused build left %s behind", p.out)
	}
	p.assertClean()
}

// TestGoModulesAreRecorded: every module ingested is a resolvedDependency with its purl, the sha256 of its zip and
// its go.sum hash as dirHash.
func TestGoModulesAreRecorded(t *testing.T) {
	p := goProject(t, "github.com/google/uuid v1.6.0 "+uuidZipH1+"\ngithub.com/google/uuid v1.6.0/go.mod "+uuidModH1+"\n")
	p.mustBuild()
	deps := p.resolved("pkg:golang/github.com/google/uuid@v1.6.0")
	var zip map[string]any
	for _, d := range deps {
		if d["uri"] == "pkg:golang/github.com/google/uuid@v1.6.0" {
			zip = d
		}
	}
	if zip == nil {
		t.Fatalf("no resolvedDependency for the module: %v", deps)
	}
	dg := zip["digest"].(map[string]any)
	// h1:NIva… is base64 of these bytes.
	if dg["dirHash"] != "348bda24330eb231c0f27d630212d2833ac0cf2d4782bfa136b6f9edefbde05d" || len(dg["sha256"].(string)) != 64 {
		t.Errorf("module digest = %v", dg)
	}
}

// TestPackageLockWithWrongIntegrityFailsTheBuild: a package whose tarball from the registry does not match the
// integrity package-lock.json pins stops the build before any task runs, naming the package and both hashes.
func TestPackageLockWithWrongIntegrityFailsTheBuild(t *testing.T) {
	const (
		real  = "sha512-41Cifkg6e8TylSpdtTpeLVMqvSBEVzTttHvERD741+pnZ8ANv0004MRL43QKPDlK9cGvNp6NZWZUBlbGXYxxng=="
		wrong = "sha512-AAAAfkg6e8TylSpdtTpeLVMqvSBEVzTttHvERD741+pnZ8ANv0004MRL43QKPDlK9cGvNp6NZWZUBlbGXYxxng=="
	)
	p := newProject(t, `    - name: web
      steps: [{name: s, run: 'echo task ran; touch "$SSF_OUTPUTS/o"'}]
      outputs: [o]
`)
	p.files["package.json"] = `{"name": "x", "version": "1.0.0", "dependencies": {"is-number": "7.0.0"}}`
	lock := func(integrity string) string {
		return `{"name": "x", "version": "1.0.0", "lockfileVersion": 3, "requires": true, "packages": {
  "": {"name": "x", "version": "1.0.0", "dependencies": {"is-number": "7.0.0"}},
  "node_modules/is-number": {"version": "7.0.0", "integrity": "` + integrity + `"}}}`
	}
	p.files["package-lock.json"] = lock(wrong)
	p.deps = "    - {type: npm, path: .}\n"
	r := p.mustFail("is-number@7.0.0", wrong, real)
	if strings.Contains(r.stderr, "task ran") {
		t.Errorf("a task ran:\n%s", r.stderr)
	}

	// The same lock with the right integrity builds, and records the package.
	p.files["package-lock.json"] = lock(real)
	p.mustBuild()
	deps := p.resolved("pkg:npm/is-number@7.0.0")
	if len(deps) != 1 || deps[0]["digest"].(map[string]any)["sha512"] == nil {
		t.Errorf("resolvedDependencies for the package = %v", deps)
	}
}
