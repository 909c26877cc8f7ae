package registry

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ssf-dev/ssf/internal/durable"
	"golang.org/x/crypto/bcrypt"
)

// BcryptCost is the cost AddUser hashes passwords with.
const BcryptCost = 12

// MinPasswordLen is the shortest password AddUser accepts.
const MinPasswordLen = 12

var userNameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._-]{0,63}$`)

// users is the users file, re-read when it changes. Successful checks are cached (keyed by a hash of name,
// password and stored hash) so that bcrypt's deliberate slowness is paid once per client, not per request.
type users struct {
	path string

	mu     sync.Mutex
	mtime  time.Time
	size   int64
	hashes map[string][]byte
	good   map[[32]byte]bool
}

// dummyHashes holds, per bcrypt cost, a hash compared against for unknown users, so that a wrong name costs
// the same time as a wrong password and names cannot be probed. It is made lazily (a cost-12 hash takes
// ~0.3 s) at the cost of the users' own hashes.
var dummyHashes sync.Map // int -> []byte

func dummyHash(cost int) []byte {
	if h, ok := dummyHashes.Load(cost); ok {
		return h.([]byte)
	}
	h, err := bcrypt.GenerateFromPassword([]byte("ssf-no-such-user"), cost)
	if err != nil {
		h, _ = bcrypt.GenerateFromPassword([]byte("ssf-no-such-user"), BcryptCost)
	}
	actual, _ := dummyHashes.LoadOrStore(cost, h)
	return actual.([]byte)
}

// dummyCost is the cost of the users' hashes (the highest, if they differ), or BcryptCost without users.
func (u *users) dummyCost() int {
	cost := 0
	for _, h := range u.hashes {
		if c, err := bcrypt.Cost(h); err == nil && c > cost {
			cost = c
		}
	}
	if cost == 0 {
		return BcryptCost
	}
	return cost
}

func loadUsers(path string) (*users, error) {
	u := &users{path: path}
	if err := u.reload(); err != nil {
		return nil, err
	}
	return u, nil
}

// reload re-reads the file when its size or time changed. A missing file means no users.
func (u *users) reload() error {
	fi, err := os.Stat(u.path)
	if errors.Is(err, fs.ErrNotExist) {
		u.hashes, u.good, u.mtime, u.size = nil, nil, time.Time{}, 0
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading users file: %w", err)
	}
	if fi.ModTime().Equal(u.mtime) && fi.Size() == u.size && u.hashes != nil {
		return nil
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("users file %q is readable by others (mode %v): chmod 600 it", u.path, fi.Mode().Perm())
	}
	hashes, err := readUsers(u.path)
	if err != nil {
		return err
	}
	u.hashes, u.good, u.mtime, u.size = hashes, map[[32]byte]bool{}, fi.ModTime(), fi.Size()
	// Make the unknown-user hash now: made on the first unknown name instead, that check took twice as long as
	// a wrong password (0.73 s against 0.36 s), telling the first prober after a start that the name is unknown.
	dummyHash(u.dummyCost())
	return nil
}

func readUsers(path string) (map[string][]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string][]byte{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading users file: %w", err)
	}
	out := map[string][]byte{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		name, hash, ok := strings.Cut(text, ":")
		if !ok || !userNameRE.MatchString(name) {
			return nil, fmt.Errorf("users file %s:%d: want NAME:BCRYPT-HASH", path, line)
		}
		if _, err := bcrypt.Cost([]byte(hash)); err != nil {
			return nil, fmt.Errorf("users file %s:%d: user %q: %w", path, line, name, err)
		}
		out[name] = []byte(hash)
	}
	return out, sc.Err()
}

// cached reports whether name and pass were verified before (and the user's hash is unchanged): such a check
// costs no bcrypt and is never throttled.
func (u *users) cached(name, pass string) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if err := u.reload(); err != nil {
		return false
	}
	hash, known := u.hashes[name]
	return known && u.good[goodKey(name, pass, hash)]
}

func goodKey(name, pass string, hash []byte) [32]byte {
	return sha256.Sum256([]byte(name + "\x00" + pass + "\x00" + string(hash)))
}

// check verifies name and pass with bcrypt (callers bound how many run at once).
func (u *users) check(name, pass string) bool {
	u.mu.Lock()
	if err := u.reload(); err != nil {
		u.mu.Unlock()
		return false
	}
	hash, known := u.hashes[name]
	key := goodKey(name, pass, hash)
	if known && u.good[key] {
		u.mu.Unlock()
		return true
	}
	cost := u.dummyCost()
	u.mu.Unlock()
	if !known {
		bcrypt.CompareHashAndPassword(dummyHash(cost), []byte(pass))
		return false
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(pass)) != nil {
		return false
	}
	u.mu.Lock()
	if u.good != nil {
		u.good[key] = true
	}
	u.mu.Unlock()
	return true
}

// AddUser adds or replaces a user in the users file at path (created with mode 0600), storing only a bcrypt
// hash of the password.
func AddUser(ctx context.Context, path, name string, password []byte) error {
	if !userNameRE.MatchString(name) {
		return fmt.Errorf("user name %q: use letters, digits, '.', '_' and '-' (at most 64)", name)
	}
	if len(password) < MinPasswordLen {
		return fmt.Errorf("password too short: at least %d characters", MinPasswordLen)
	}
	if bytes.ContainsAny(password, "\r\n") {
		return errors.New("password contains a line break")
	}
	hash, err := bcrypt.GenerateFromPassword(password, BcryptCost)
	if err != nil {
		return fmt.Errorf("hashing password: %w", err)
	}
	existing, err := readUsers(path)
	if err != nil {
		return err
	}
	existing[name] = hash
	var buf bytes.Buffer
	buf.WriteString("# ssf registry users: NAME:BCRYPT-HASH. Add users with `ssf registry user add NAME`.\n")
	names := make([]string, 0, len(existing))
	for n := range existing {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		fmt.Fprintf(&buf, "%s:%s\n", n, existing[n])
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := durable.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return durable.Replace(path, buf.Bytes(), 0o600)
}
