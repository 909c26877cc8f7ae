package source

import (
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pjbgf/sha1cd"
)

// The two SHAttered PDFs have one SHA-1. Git object ids of the source are computed with collision detection, so
// such input is refused rather than taken as proof of which bytes a commit holds. The PDFs come from the test data
// of the collision-detection module itself, read from the module cache.
func TestObjectIDRefusesSHA1Collisions(t *testing.T) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/pjbgf/sha1cd").Output()
	if err != nil {
		t.Fatalf("locating the sha1cd module's test data: %v", err)
	}
	dir := filepath.Join(strings.TrimSpace(string(out)), "test", "testdata", "files")
	a, errA := os.ReadFile(filepath.Join(dir, "shattered-1.pdf"))
	b, errB := os.ReadFile(filepath.Join(dir, "shattered-2.pdf"))
	if errA != nil || errB != nil {
		t.Fatalf("the SHAttered PDFs are not in the module cache: %v, %v", errA, errB)
	}
	if sha1.Sum(a) != sha1.Sum(b) {
		t.Fatal("test data: the two PDFs should share a SHA-1")
	}
	for _, data := range [][]byte{a, b} {
		h := sha1cd.New()
		h.Write(data)
		if id, err := objectID(h); !errors.Is(err, errSHA1Collision) {
			t.Errorf("objectID of a SHAttered PDF = %s, %v; want errSHA1Collision", id, err)
		}
	}
	h := sha1cd.New()
	h.Write([]byte("blob 6\x00hello\n"))
	want := sha1.Sum([]byte("blob 6\x00hello\n"))
	if id, err := objectID(h); err != nil || id != hex.EncodeToString(want[:]) {
		t.Errorf("objectID of an ordinary blob = %s, %v; want %x", id, err, want)
	}
}
