package secret

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func newStore(t *testing.T) (*Store, string) {
	dir := t.TempDir()
	return Open(filepath.Join(dir, "secrets"), filepath.Join(dir, "keys", "secrets.key")), dir
}

func TestRoundTripAndAtRest(t *testing.T) {
	s, dir := newStore(t)
	value := []byte("tok-3f9a1c77e2\nsecond line")
	if err := s.Set("NPM_TOKEN", value); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get("NPM_TOKEN")
	if err != nil || !bytes.Equal(got, value) {
		t.Fatalf("Get = %q, %v", got, err)
	}
	// Nothing under the home holds the value, in the clear or base64.
	b64 := base64.StdEncoding.EncodeToString(value)
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		data, _ := os.ReadFile(p)
		if bytes.Contains(data, []byte("tok-3f9a1c77e2")) || bytes.Contains(data, []byte(b64[:12])) {
			t.Errorf("%s holds the value", p)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %s, want 0600", p, fi.Mode().Perm())
		}
		return nil
	})
	for _, d := range []string{"secrets", "keys"} {
		if fi, err := os.Stat(filepath.Join(dir, d)); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: %v, mode %v; want 0700", d, err, fi.Mode().Perm())
		}
	}
	list, err := s.List()
	if err != nil || len(list) != 1 || list[0].Name != "NPM_TOKEN" || list[0].SetAt.IsZero() {
		t.Fatalf("List = %+v, %v", list, err)
	}
	if err := s.Remove("NPM_TOKEN"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get("NPM_TOKEN"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after Remove = %v, want ErrNotFound", err)
	}
	if err := s.Remove("NPM_TOKEN"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Remove twice = %v, want ErrNotFound", err)
	}
}

// A file renamed (or copied) to another secret's name, or edited, does not authenticate and is refused.
func TestTamperedRefused(t *testing.T) {
	s, dir := newStore(t)
	for _, n := range []string{"A", "B"} {
		if err := s.Set(n, []byte("value-of-"+n)); err != nil {
			t.Fatal(err)
		}
	}
	a, b := filepath.Join(dir, "secrets", "A.json"), filepath.Join(dir, "secrets", "B.json")
	orig, _ := os.ReadFile(b)

	// Renamed: A's file as B, as is.
	data, _ := os.ReadFile(a)
	os.WriteFile(b, data, 0o600)
	if _, err := s.Get("B"); err == nil || !strings.Contains(err.Error(), "does not authenticate") {
		t.Fatalf("renamed file: %v", err)
	}
	// Renamed with the name inside edited too: the additional data still binds the ciphertext to A.
	var f file
	json.Unmarshal(data, &f)
	f.Name = "B"
	data, _ = json.Marshal(f)
	os.WriteFile(b, data, 0o600)
	if _, err := s.Get("B"); err == nil || !strings.Contains(err.Error(), "does not authenticate") {
		t.Fatalf("renamed file with its name edited: %v", err)
	}
	// One bit of the ciphertext flipped.
	json.Unmarshal(orig, &f)
	f.Ciphertext[0] ^= 1
	data, _ = json.Marshal(f)
	os.WriteFile(b, data, 0o600)
	if _, err := s.Get("B"); err == nil || !strings.Contains(err.Error(), "does not authenticate") {
		t.Fatalf("flipped bit: %v", err)
	}
	if _, err := s.Get("A"); err != nil {
		t.Fatalf("A itself: %v", err)
	}
	// List shows both, B as unreadable when its file names another secret.
	os.WriteFile(b, mustRead(t, a), 0o600)
	list, err := s.List()
	if err != nil || len(list) != 2 || list[0].Error != "" || !strings.Contains(list[1].Error, "does not authenticate") {
		t.Fatalf("List = %+v, %v", list, err)
	}
}

func TestRefusedInput(t *testing.T) {
	s, _ := newStore(t)
	for _, tc := range []struct {
		name, value, want string
	}{
		{"TOKEN", "", "empty"},
		{"TOKEN", "abc", "shorter than 4"},
		{"TOKEN", strings.Repeat("x", MaxSize+1), "larger than"},
		{"../x", "value", "not valid"},
		{"a/b", "value", "not valid"},
		{"", "value", "not valid"},
		{"1TOKEN", "value", "not valid"},
		{strings.Repeat("A", 65), "value", "not valid"},
		{"TOK EN", "value", "not valid"},
	} {
		err := s.Set(tc.name, []byte(tc.value))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Set(%q, %d bytes) = %v, want %q", tc.name, len(tc.value), err, tc.want)
		}
		if err != nil && len(tc.value) > 0 && strings.Contains(err.Error(), tc.value) {
			t.Errorf("error quotes the value: %v", err)
		}
	}
}

func TestKeyReadableByOthersRefused(t *testing.T) {
	s, dir := newStore(t)
	if err := s.Set("A", []byte("value")); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Join(dir, "keys", "secrets.key"), 0o644)
	if _, err := s.Get("A"); err == nil || !strings.Contains(err.Error(), "0600") {
		t.Fatalf("Get with a 0644 key = %v", err)
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// Links planted in the store are never followed to write elsewhere: a link at NAME.json is replaced, not written
// through; a store directory or key directory that is a link is refused, its target left as it was.
func TestPlantedLinksNotFollowed(t *testing.T) {
	s, dir := newStore(t)
	victim := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(victim, []byte("host file"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Set("A_FIRST", []byte("value-one")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, filepath.Join(dir, "secrets", "EVIL.json")); err != nil {
		t.Fatal(err)
	}
	if err := s.Set("EVIL", []byte("value-two")); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove("EVIL"); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(victim); string(data) != "host file" {
		t.Errorf("the link's target was written: %q", data)
	}

	elsewhere := t.TempDir()
	os.Chmod(elsewhere, 0o755)
	for _, d := range []string{"secrets", "keys"} {
		s, dir := newStore(t)
		if err := os.Symlink(elsewhere, filepath.Join(dir, d)); err != nil {
			t.Fatal(err)
		}
		err := s.Set("B", []byte("value-three"))
		if err == nil || !strings.Contains(err.Error(), "must be a directory of the factory home, not a symlink") {
			t.Errorf("%s is a link: Set = %v", d, err)
		}
		if entries, _ := os.ReadDir(elsewhere); len(entries) != 0 {
			t.Errorf("%s is a link: its target got %v", d, entries)
		}
		if fi, _ := os.Stat(elsewhere); fi.Mode().Perm() != 0o755 {
			t.Errorf("%s is a link: its target's mode became %s", d, fi.Mode())
		}
	}
}
