// Package secret is the factory's secret store: values a pipeline's tasks may be given (an API token, a signing
// key of the project's own), encrypted at rest under $SSF_HOME.
//
// # Format
//
// Each secret is one file, $SSF_HOME/secrets/NAME.json (0600, in a 0700 directory, written atomically), holding
// its name, when it was set, a random 12-byte nonce and the AES-256-GCM ciphertext of its value. The key is 32
// random bytes in $SSF_HOME/keys/secrets.key (0600), made on first use. The additional authenticated data is
// "ssf-secret-v1", a zero byte, the name, a zero byte and the time it was set: a file copied or renamed to
// another secret's name, or whose time was edited, fails authentication and is refused, as is any changed byte.
//
// # What it must never do
//
// It must never write a value in the clear to disk, print it, or put it in an error message; never return a value
// whose file did not authenticate under its own name; never accept a name that is not a short identifier (it
// becomes a file name here and under /run/secrets in a task); and never create the key or a secret readable by
// anyone but the factory's owner. Keeping values out of tasks that did not ask for them, and out of logs, is the
// factory's job (internal/factory/secrets.go).
package secret

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/ssf-dev/ssf/internal/durable"
)

// Limits on a value.
const (
	// MaxSize bounds a value: secrets are tokens and keys, and every task that lists one gets it in memory.
	MaxSize = 64 << 10
	// MinSize is the shortest value accepted: logs are redacted of every occurrence of a value, and a shorter one
	// ("1", "yes") would redact ordinary text while hiding little.
	MinSize = 4
)

// ErrNotFound is returned for a name the store holds no secret for.
var ErrNotFound = errors.New("secret not set")

var nameRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]{0,63}$`)

// CheckName says what is wrong with a secret's name, or returns nil. A name is a letter followed by at most 63
// letters, digits, '_' or '-': it becomes a file name, in the store and at /run/secrets/NAME in a task.
func CheckName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("secret name %q is not valid: use a letter followed by at most 63 letters, digits, '_' or '-' (for example NPM_TOKEN)", name)
	}
	return nil
}

// CheckValue says what is wrong with a value, or returns nil. The error never quotes the value.
func CheckValue(v []byte) error {
	switch {
	case len(v) == 0:
		return errors.New("the secret's value is empty: give it on stdin, e.g. `printf %s \"$TOKEN\" | ssf secret set NAME`")
	case len(v) < MinSize:
		return fmt.Errorf("the secret's value is %d bytes, shorter than %d: so short a value cannot be redacted from logs without hiding ordinary text", len(v), MinSize)
	case len(v) > MaxSize:
		return fmt.Errorf("the secret's value is larger than %d bytes", MaxSize)
	}
	return nil
}

// Store is a directory of encrypted secrets and the file of its key.
type Store struct {
	dir, keyPath string
}

// Open returns the store in dir whose key is at keyPath. Nothing is created until a secret is set.
func Open(dir, keyPath string) *Store { return &Store{dir: dir, keyPath: keyPath} }

// Info is what may be shown of a secret: never its value.
type Info struct {
	Name  string    `json:"name"`
	SetAt time.Time `json:"setAt"`
	// Error says why the secret's file cannot be read (it is listed so that it can be set again or removed); its
	// value is only authenticated when a build reads it.
	Error string `json:"error,omitempty"`
}

// file is a secret as stored.
type file struct {
	Version    int       `json:"version"`
	Name       string    `json:"name"`
	SetAt      time.Time `json:"setAt"`
	Nonce      []byte    `json:"nonce"`
	Ciphertext []byte    `json:"ciphertext"`
}

const formatVersion = 1

func (s *Store) path(name string) string { return filepath.Join(s.dir, name+".json") }

// Set stores value under name, replacing any earlier value, encrypted with the store's key (made when missing).
func (s *Store) Set(name string, value []byte) error {
	if err := CheckName(name); err != nil {
		return err
	}
	if err := CheckValue(value); err != nil {
		return err
	}
	aead, err := s.cipher(true)
	if err != nil {
		return err
	}
	f := file{Version: formatVersion, Name: name, SetAt: time.Now().UTC().Truncate(time.Second)}
	f.Nonce = make([]byte, aead.NonceSize())
	if _, err := rand.Read(f.Nonce); err != nil {
		return err
	}
	f.Ciphertext = aead.Seal(nil, f.Nonce, value, additionalData(f.Name, f.SetAt))
	data, err := json.Marshal(f)
	if err != nil {
		return err
	}
	if err := durable.MkdirAll(s.dir, 0o700); err != nil {
		return fmt.Errorf("creating the secret store %q: %w", s.dir, err)
	}
	if err := realDir(s.dir); err != nil {
		return err
	}
	if err := os.Chmod(s.dir, 0o700); err != nil {
		return err
	}
	if err := durable.Replace(s.path(name), data, 0o600); err != nil {
		return fmt.Errorf("storing secret %q: %w", name, err)
	}
	return nil
}

// Get returns the value of the secret name; ErrNotFound (wrapped) when it is not set. A file that does not
// authenticate under its name is an error that says so.
func (s *Store) Get(name string) ([]byte, error) {
	if err := CheckName(name); err != nil {
		return nil, err
	}
	f, err := s.read(name)
	if err != nil {
		return nil, err
	}
	aead, err := s.cipher(false)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("secret %q cannot be decrypted: the store's key %s is missing; set the secret again with `ssf secret set %s`", name, s.keyPath, name)
	} else if err != nil {
		return nil, err
	}
	if len(f.Nonce) != aead.NonceSize() {
		return nil, s.tampered(name)
	}
	v, err := aead.Open(nil, f.Nonce, f.Ciphertext, additionalData(f.Name, f.SetAt))
	if err != nil {
		return nil, s.tampered(name)
	}
	return v, nil
}

func (s *Store) tampered(name string) error {
	return fmt.Errorf("secret %q (%s) does not authenticate under the store's key: the file was changed, copied from another name or another factory; set it again with `ssf secret set %s`", name, s.path(name), name)
}

// read reads and decodes name's file, checking that it says it is name's.
func (s *Store) read(name string) (file, error) {
	var f file
	data, err := readSmall(s.path(name))
	if errors.Is(err, fs.ErrNotExist) {
		return f, fmt.Errorf("secret %q: %w", name, ErrNotFound)
	} else if err != nil {
		return f, fmt.Errorf("reading secret %q: %w", name, err)
	}
	if err := json.Unmarshal(data, &f); err != nil || f.Version != formatVersion {
		return f, fmt.Errorf("reading secret %q (%s): not a secret file of this ssf; set it again with `ssf secret set %s`", name, s.path(name), name)
	}
	if f.Name != name {
		return f, s.tampered(name)
	}
	return f, nil
}

// readSmall reads a regular file of the store without following a symlink, bounded in size.
func readSmall(path string) ([]byte, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	if fi.Size() > 4*MaxSize {
		return nil, fmt.Errorf("%s is larger than any secret file", path)
	}
	return os.ReadFile(path)
}

// List returns every secret's name and when it was set, sorted by name. Values are not decrypted.
func (s *Store) List() ([]Info, error) {
	entries, err := os.ReadDir(s.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("listing secrets: %w", err)
	}
	var out []Info
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || CheckName(name) != nil {
			continue // a temporary file of an interrupted Set, or something that is no secret of ours
		}
		f, err := s.read(name)
		if err != nil {
			out = append(out, Info{Name: name, Error: err.Error()})
			continue
		}
		out = append(out, Info{Name: f.Name, SetAt: f.SetAt})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Remove deletes the secret name; ErrNotFound (wrapped) when it is not set.
func (s *Store) Remove(name string) error {
	if err := CheckName(name); err != nil {
		return err
	}
	err := durable.Remove(s.path(name))
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("secret %q: %w", name, ErrNotFound)
	}
	return err
}

func additionalData(name string, setAt time.Time) []byte {
	return []byte("ssf-secret-v1\x00" + name + "\x00" + setAt.UTC().Format(time.RFC3339))
}

// cipher loads the store's key (making it first when create is set) and returns its AES-256-GCM.
func (s *Store) cipher(create bool) (cipher.AEAD, error) {
	key, err := s.loadKey()
	if errors.Is(err, fs.ErrNotExist) && create {
		key = make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		if err := durable.MkdirAll(filepath.Dir(s.keyPath), 0o700); err != nil {
			return nil, fmt.Errorf("creating the secret key's directory: %w", err)
		}
		if err := realDir(filepath.Dir(s.keyPath)); err != nil {
			return nil, err
		}
		err = durable.WriteNew(s.keyPath, key, 0o600)
		if errors.Is(err, fs.ErrExist) { // made meanwhile by another ssf
			key, err = s.loadKey()
		}
	}
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// realDir refuses a directory of the store that is a symlink (or not a directory): Set would follow it, chmod
// its target and write the value's file (or the key) wherever it points, outside the factory home.
func realDir(dir string) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s must be a directory of the factory home, not a symlink or a file (it is %s): remove it, and ssf makes it again", dir, fi.Mode().Type())
	}
	return nil
}

// loadKey reads the key, refusing one that anyone but its owner could read or that is not 32 bytes.
func (s *Store) loadKey() ([]byte, error) {
	fi, err := os.Lstat(s.keyPath)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("the secret key %s must be a regular file readable only by its owner (mode 0600); it is %s", s.keyPath, fi.Mode())
	}
	key, err := os.ReadFile(s.keyPath)
	if err != nil {
		return nil, fmt.Errorf("reading the secret key: %w", err)
	}
	if len(key) != 32 {
		return nil, fmt.Errorf("the secret key %s is %d bytes, not 32", s.keyPath, len(key))
	}
	return key, nil
}
