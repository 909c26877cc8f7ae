package policy

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// A schema's $ref must not become a way to the network or to files outside the policy directory: OPA v1.22.4
// refuses remote references but reads file:// ones, so json.match_schema and json.verify_schema do not compile.
func TestSchemaReferencesStayLocal(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Write([]byte(`{"type":"object"}`))
	}))
	defer srv.Close()
	secret := filepath.Join(t.TempDir(), "schema.json")
	if err := os.WriteFile(secret, []byte(`{"type":"object"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{srv.URL + "/s.json", "file://" + secret} {
		dir := writeSet(t, map[string]string{"b.rego": `package ssf.build

deny contains msg if {
	[ok, _] := json.match_schema({}, {"$ref": "` + ref + `"})
	ok
	msg := "matched"
}
`})
		s, err := Load(context.Background(), dir)
		var le *LoadError
		if !errors.As(err, &le) || !strings.Contains(err.Error(), "b.rego:4:") || !strings.Contains(err.Error(), "json.match_schema") {
			t.Errorf("$ref %s: loaded (%v), want a refusal of json.match_schema at b.rego:4", ref, err)
			if s != nil {
				d, err := s.Evaluate(context.Background(), Build, buildInput())
				t.Errorf("and it decided %v, %v", d, err)
			}
		}
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("the policy reached the server %d times", n)
	}
}
