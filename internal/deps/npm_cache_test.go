package deps

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"testing/fstest"
)

// TestNpmTaskCacheIsItsOwn: npm 9 (Debian 12's npm 9.2.0, pacote 15) writes each tarball it fetched through a
// packument back into content-v2 and then chmods the file there 0444, and when it cannot (a read-only tree, a file
// not its own) takes the tarball for corrupted, deletes it and fails `npm ci` with EROFS or EACCES. So a task's npm
// cache must be its own to the last tarball: run as the task's uid, the chmod and the unlink npm 9 does succeed
// on every file of it, and the tree is left as it was. (With content-v2 a link into the tree the chmod failed:
// TestNpmCIOffline/resolved=false showed it with Debian's npm, this shows it with any.)
func TestNpmTaskCacheIsItsOwn(t *testing.T) {
	if _, err := exec.LookPath("setpriv"); err != nil || os.Geteuid() != 0 {
		t.Skip("needs root and setpriv: acts as another uid")
	}
	tgz := tarGz(t, map[string]string{"package/package.json": `{"name": "a", "version": "1.0.0"}`})
	srv := newNpmServer(t, map[string][]byte{"/a/-/a-1.0.0.tgz": tgz})
	lock := lockJSON(t, 3, map[string]map[string]any{"node_modules/a": {"version": "1.0.0", "integrity": sri(tgz)}})
	// Directories others can enter: the task's uid must reach its cache.
	work := t.TempDir()
	for _, d := range []string{filepath.Dir(work), work} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	tree, tmp := filepath.Join(work, "tree"), filepath.Join(work, "tmp")
	for _, d := range []string{tree, tmp} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	src := fstest.MapFS{"package.json": {Data: []byte(`{}`)}, "package-lock.json": {Data: lock}}
	if _, err := Ingest(context.Background(), src, []Spec{{Kind: Npm, Path: "."}}, tree, Options{Cache: filepath.Join(work, "cache"), NpmRegistry: srv.URL}); err != nil {
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
	content := filepath.Join(tmp, ".npm", "_cacache", "content-v2")
	var files []string
	// Through content-v2 if it is a link (a trailing / makes the walk follow it).
	err := filepath.WalkDir(content+string(filepath.Separator), func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			files = append(files, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 2 {
		t.Fatalf("the task's content-v2 holds %d files (%v), want the tarball and its packument", len(files), files)
	}
	for _, f := range files {
		cmd := exec.Command("setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", "sh", "-c", `chmod 0444 "$1" && rm "$1"`, "sh", f)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("as the task's uid, chmod 0444 and rm %s: %v\n%s", f, err, out)
		}
	}
	if after := listTree(t, tree); after != before {
		t.Errorf("the tree changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}
