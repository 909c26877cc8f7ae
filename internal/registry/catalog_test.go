package registry

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"net/http"
	"path/filepath"
	"slices"
	"testing"
)

// The catalog lists every repository (nested ones too, in byte order across directories), pages with n and last
// and a Link header, and answers only a caller who may pull.
func TestCatalog(t *testing.T) {
	tr := newTestRegistry(t)
	cfg := []byte("{}")
	want := []string{"a", "team-x", "team/app", "team/app/sub", "z9"}
	for _, repo := range want {
		cd := tr.pushBlob(repo, cfg)
		_, resp := tr.pushManifest(repo, "v1", image(cd, len(cfg), nil, nil))
		expect(t, resp, http.StatusCreated, "")
	}
	// A repository directory with nothing in it (a name's parent) is not a repository; "team" is such a parent.
	for _, tc := range []struct {
		first string
		pages int
	}{{"/v2/_catalog", 1}, {"/v2/_catalog?n=2", 3}, {"/v2/_catalog?n=5", 1}, {"/v2/_catalog?n=1", 5}} {
		var got []string
		pages := 0
		for path := tc.first; path != ""; pages++ {
			if pages > len(want) {
				t.Fatal("pagination does not end")
			}
			resp := tr.do("GET", path, nil)
			var c catalog
			if err := json.Unmarshal(expect(t, resp, http.StatusOK, ""), &c); err != nil {
				t.Fatal(err)
			}
			got = append(got, c.Repositories...)
			path = nextLink(resp.Header)
		}
		if !slices.Equal(got, want) || pages != tc.pages {
			t.Errorf("from %s: %q over %d pages, want %q over %d", tc.first, got, pages, want, tc.pages)
		}
	}
	resp := tr.do("GET", "/v2/_catalog?n=2&last=team-x", nil)
	var c catalog
	if err := json.Unmarshal(expect(t, resp, http.StatusOK, ""), &c); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.Repositories, []string{"team/app", "team/app/sub"}) {
		t.Errorf("after team-x: %q", c.Repositories)
	}
	for _, bad := range []string{"?n=-1", "?n=x", "?last=..%2Fetc"} {
		expect(t, tr.do("GET", "/v2/_catalog"+bad, nil), http.StatusBadRequest, "")
	}
	expect(t, tr.do("DELETE", "/v2/_catalog", nil), http.StatusMethodNotAllowed, "")

	// Tags, as ssf registry ls REPO reads them.
	tags, more, err := tr.reg.Tags(context.Background(), "team/app", "", 10)
	if err != nil || more || len(tags) != 1 || tags[0].Name != "v1" || len(tags[0].Digest) != len("sha256:")+64 {
		t.Errorf("Tags(team/app) = %+v, %v, %v", tags, more, err)
	}
	if _, _, err := tr.reg.Tags(context.Background(), "nothing", "", 10); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Tags(nothing) err = %v, want fs.ErrNotExist", err)
	}
}

// Without anonymous pull, the catalog (which names every repository) needs credentials like any pull.
func TestCatalogNeedsPullAccess(t *testing.T) {
	dir := t.TempDir()
	tr := newTestRegistry(t, WithUsersFile(filepath.Join(dir, "users")))
	expect(t, tr.do("GET", "/v2/_catalog", nil), http.StatusUnauthorized, "")
}

// An empty registry lists no repositories, as [] not null.
func TestCatalogEmpty(t *testing.T) {
	tr := newTestRegistry(t)
	body := expect(t, tr.do("GET", "/v2/_catalog", nil), http.StatusOK, "")
	if string(body) != `{"repositories":[]}` {
		t.Errorf("empty catalog = %s", body)
	}
	repos, more, err := tr.reg.Repositories(context.Background(), "", 10)
	if err != nil || more || len(repos) != 0 {
		t.Errorf("Repositories() = %v, %v, %v", repos, more, err)
	}
}
