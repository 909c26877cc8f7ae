package deps

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/opencontainers/go-digest"
)

var errRefused = errors.New("refused by the test")

// recorder is an Options.Admit that records what it was asked and refuses the names it is given.
type recorder struct {
	mu     sync.Mutex
	asked  []Candidate
	refuse func(Candidate) bool
}

func (r *recorder) admit(_ context.Context, c Candidate) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.asked = append(r.asked, c)
	if r.refuse != nil && r.refuse(c) {
		return errRefused
	}
	return nil
}

// TestAdmitFileBeforeFetch: a refused file is never requested, and a later spec's refusal stops the ingestion
// before an earlier spec's file is fetched.
func TestAdmitFileBeforeFetch(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Write([]byte("bytes\n"))
	}))
	defer srv.Close()
	pin := digest.FromBytes([]byte("bytes\n"))
	specs := []Spec{
		{Kind: File, URL: srv.URL + "/ok.tgz", SHA256: pin, Dest: "ok.tgz"},
		{Kind: File, URL: "http://user:secret@" + strings.TrimPrefix(srv.URL, "http://") + "/banned.tgz", SHA256: pin, Dest: "banned.tgz"},
	}
	r := &recorder{refuse: func(c Candidate) bool { return c.Name == "banned.tgz" }}
	_, err := Ingest(context.Background(), nil, specs, t.TempDir(), Options{Cache: t.TempDir(), Admit: r.admit})
	var se *SpecError
	if !errors.Is(err, errRefused) || !errors.As(err, &se) || se.Index != 1 {
		t.Fatalf("Ingest: %v, want the refusal of spec 1", err)
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("%d requests reached the server; nothing may be fetched once a file is refused", n)
	}
	want := Candidate{Kind: File, Name: "banned.tgz", URL: srv.URL + "/banned.tgz", Pin: pin.String()}
	if !slices.Contains(r.asked, want) {
		t.Errorf("asked %+v, want %+v among them (no credentials in the URL)", r.asked, want)
	}
}

// TestAdmitNpmAllBeforeAnyDownload: every npm package is decided on before any download, every refusal is
// reported, and an admitted lock ingests as before, each package asked about once.
func TestAdmitNpmAllBeforeAnyDownload(t *testing.T) {
	src, srv, _ := fakeNpm(t)
	r := &recorder{refuse: func(c Candidate) bool { return strings.HasPrefix(c.Name, "@s/") }}
	_, err := Ingest(context.Background(), src, []Spec{{Kind: Npm, Path: "web"}}, t.TempDir(),
		Options{Cache: t.TempDir(), NpmRegistry: srv.URL + "/", Admit: r.admit})
	if !errors.Is(err, errRefused) || !strings.Contains(err.Error(), `"node_modules/@s/b"`) || !strings.Contains(err.Error(), `"node_modules/a/node_modules/@s/b"`) {
		t.Fatalf("Ingest: %v, want both @s/b versions refused", err)
	}
	if n := srv.hits.Load(); n != 0 {
		t.Errorf("%d requests reached the registry before the refusals", n)
	}
	r = &recorder{}
	got, err := Ingest(context.Background(), src, []Spec{{Kind: Npm, Path: "web"}}, t.TempDir(),
		Options{Cache: t.TempDir(), NpmRegistry: srv.URL + "/", Admit: r.admit})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.asked) != len(got) {
		t.Errorf("asked %d times for %d packages", len(r.asked), len(got))
	}
	for _, c := range r.asked {
		if c.Kind != Npm || c.PURL == "" || !strings.HasPrefix(c.Pin, "sha512-") || !strings.HasPrefix(c.URL, srv.URL) {
			t.Errorf("candidate %+v", c)
		}
	}
}

// TestAdmitGomodOncePerModule: each module version is asked about once (its go.mod and zip share the decision,
// which names the zip's pin); a refused one fails the ingestion without being fetched.
func TestAdmitGomodOncePerModule(t *testing.T) {
	src := os.DirFS("testdata/gomod-uuid")
	r := &recorder{}
	count := &countingTransport{}
	tree := t.TempDir()
	_, err := Ingest(context.Background(), src, []Spec{{Kind: Gomod, Path: "."}}, tree,
		Options{Cache: t.TempDir(), GoProxy: testGoProxy(t), Client: &http.Client{Transport: count}, Admit: r.admit})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, c := range r.asked {
		seen[c.Name+"@"+c.Version]++
	}
	uuid := "github.com/google/uuid@v1.6.0"
	if seen[uuid] != 1 {
		t.Fatalf("asked %v, want %s once", seen, uuid)
	}
	for _, c := range r.asked {
		if c.Name == "github.com/google/uuid" && (c.PURL != "pkg:golang/github.com/google/uuid@v1.6.0" || !strings.HasSuffix(c.URL, "/github.com/google/uuid/@v/v1.6.0.zip") || c.Pin != "h1:NIvaJDMOsjHA8n1jAhLSgzrAzy1Hgr+hNrb57e+94F0=") {
			t.Errorf("candidate %+v", c)
		}
	}
	r = &recorder{refuse: func(c Candidate) bool { return c.Name == "github.com/google/uuid" }}
	count = &countingTransport{}
	_, err = Ingest(context.Background(), src, []Spec{{Kind: Gomod, Path: "."}}, t.TempDir(),
		Options{Cache: t.TempDir(), GoProxy: testGoProxy(t), Client: &http.Client{Transport: count}, Admit: r.admit})
	if !errors.Is(err, errRefused) {
		t.Fatalf("Ingest: %v, want the refusal", err)
	}
	if n := count.n.Load(); n != 0 {
		t.Errorf("%d requests reached the proxy for a refused module", n)
	}
}
