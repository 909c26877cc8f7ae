package registry

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestAcknowledgedNamesMadeByOthersAreSynced: a push that finds its blob, blob link or manifest bytes already
// named has them from another request, which may have made the name and not yet synced its directory (it is
// between link(2) and fsync of the directory). The push must sync that directory itself before answering 201;
// before, a crash at that moment lost a blob the second push had acknowledged.
func TestAcknowledgedNamesMadeByOthersAreSynced(t *testing.T) {
	tr := newTestRegistry(t)
	st := &tr.reg.store
	blob := []byte("a blob another session is committing")
	d, err := parseDigest(sha(blob))
	if err != nil {
		t.Fatal(err)
	}
	cfg := []byte(`{"architecture":"amd64","os":"linux"}`)
	m := mustJSON(image(sha(cfg), len(cfg), map[string]int{d.String(): len(blob)}, nil))
	md, err := parseDigest(sha(m))
	if err != nil {
		t.Fatal(err)
	}
	tr.pushBlob("r", cfg)
	// What the other requests left: each name made, its directory not yet synced.
	for path, data := range map[string][]byte{st.blobPath(d): blob, st.blobLink("r", d): nil, st.blobPath(md): m} {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var synced []string
	syncDir = func(dir string) error {
		synced = append(synced, dir)
		return nil
	}
	t.Cleanup(func() { syncDir = durableSyncDir })

	expect(t, tr.do("POST", "/v2/r/blobs/uploads/?digest="+d.String(), bytes.NewReader(blob)), http.StatusCreated, "")
	expect(t, tr.do("PUT", "/v2/r/manifests/v1", bytes.NewReader(m), "Content-Type", mediaTypeOCIManifest), http.StatusCreated, "")
	for _, path := range []string{st.blobPath(d), st.blobLink("r", d), st.blobPath(md)} {
		if !slices.Contains(synced, filepath.Dir(path)) {
			t.Errorf("the push acknowledged %s without syncing its directory (synced: %q)", path, synced)
		}
	}
}

var durableSyncDir = syncDir
