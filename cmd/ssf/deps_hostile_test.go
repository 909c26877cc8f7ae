package main

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestStepCannotPoisonTheNpmCache: a step gets its own writable copy of the npm cache in /tmp (npm writes to it;
// see deps.PrepareNpmCache), the tree it was copied from staying read-only. It cannot write to the tree nor change
// a tarball there; what it does to its own copy (its own bytes for a tarball, deleting the index) is gone for the
// next task, which finds the tarball the control plane checked; and a second build still gets the checked bytes.
func TestStepCannotPoisonTheNpmCache(t *testing.T) {
	const integrity = "sha512-41Cifkg6e8TylSpdtTpeLVMqvSBEVzTttHvERD741+pnZ8ANv0004MRL43QKPDlK9cGvNp6NZWZUBlbGXYxxng=="
	raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(integrity, "sha512-"))
	if err != nil {
		t.Fatal(err)
	}
	h := hex.EncodeToString(raw)
	rel := "sha512/" + h[:2] + "/" + h[2:4] + "/" + h[4:]
	p := newProject(t, `    - name: evil
      env: {REL: "`+rel+`"}
      steps:
        - name: poison
          run: |
            C=/tmp/.npm/_cacache
            T=/deps/.npm/_cacache
            test -f $C/content-v2/$REL
            if echo x > $T/content-v2/sha512/planted; then echo "planted in the tree"; exit 1; fi
            if echo x >> $T/content-v2/$REL; then echo "changed a tarball"; exit 1; fi
            if echo x > $T/index-v5/planted; then echo "wrote the tree's index"; exit 1; fi
            echo poisoned > $C/content-v2/$REL
            rm -rf $C/index-v5
            echo poisoned its own copy
            touch "$SSF_OUTPUTS/o"
      outputs: [o]
    - name: check
      needs: [evil]
      env: {REL: "`+rel+`"}
      steps:
        - name: read
          run: |
            C=/tmp/.npm/_cacache
            test -d $C/index-v5
            sha512sum $C/content-v2/$REL > "$SSF_OUTPUTS/sum"
      outputs: [sum]
`)
	p.files["package.json"] = `{"name": "x", "version": "1.0.0", "dependencies": {"is-number": "7.0.0"}}`
	p.files["package-lock.json"] = `{"name": "x", "version": "1.0.0", "lockfileVersion": 3, "requires": true, "packages": {
  "": {"name": "x", "version": "1.0.0", "dependencies": {"is-number": "7.0.0"}},
  "node_modules/is-number": {"version": "7.0.0", "integrity": "` + integrity + `"}}}`
	p.deps = "    - {type: npm, path: .}\n"
	for i := range 2 {
		p.out = filepath.Join(p.dir, fmt.Sprintf("out%d", i))
		r := p.mustBuild()
		if !strings.Contains(r.stderr, "poisoned its own copy") {
			t.Fatalf("the poisoning step did not run to its end:\n%s", r.stderr)
		}
		if got := p.output("sum"); !strings.HasPrefix(got, h+" ") {
			t.Errorf("the next task read %q, want the checked tarball's sha512 %s", got, h)
		}
	}
}

// TestOutMustNotBeInsideFactoryHome: outputs are a step's bytes; under $SSF_HOME they could pose as the factory's
// own state (a dependency cache entry and its checked-digest record). Refused as bad input, nothing created,
// also through a symlink to the home.
func TestOutMustNotBeInsideFactoryHome(t *testing.T) {
	p := newProject(t, `    - name: t
      steps: [{name: s, run: 'touch "$SSF_OUTPUTS/o"'}]
      outputs: [o]
`)
	link := filepath.Join(p.dir, "home-link")
	if err := os.Symlink(homeDir, link); err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{filepath.Join(homeDir, "cache", "deps", "x"), filepath.Join(link, "planted")} {
		p.out = out
		r := p.build()
		if r.code != 2 || !strings.Contains(r.stderr, "inside the factory home") {
			t.Errorf("--out %s: exit %d, want 2 refusing it:\n%s", out, r.code, r.stderr)
		}
		if _, err := os.Lstat(out); !os.IsNotExist(err) {
			t.Errorf("--out %s was created", out)
		}
	}
	if _, err := os.Lstat(filepath.Join(homeDir, "planted")); !os.IsNotExist(err) {
		t.Errorf("a directory was created in the factory home")
	}
}
