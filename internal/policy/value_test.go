package policy

import (
	"encoding/json"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
)

// The direct conversion gives exactly what a JSON round trip of the json tags gives (but for null, below).
func TestInputValuesMatchJSON(t *testing.T) {
	st := provenanceFor(hexA, "https://ssf.dev/factory/host")
	cert := st
	cert.Signer = Signer{Identity: "spiffe://ssf/pipeline/app", Issuer: "https://ssf.dev/factory/host"}
	noPred := st
	noPred.Predicate = nil
	art := Artifact{URI: "r/app@sha256:" + hexA, Digest: "sha256:" + hexA}
	for _, in := range []valuer{
		buildInput(),
		DepsInput{Dependency{Type: "npm", Name: "n", Version: "1", PURL: "pkg:npm/n@1", URL: "https://r/n.tgz", Digest: "sha512-x"}},
		PublishInput{Outputs: []Output{{Name: "a", Digest: "sha256:" + hexA}}, Statements: []Statement{st, cert, noPred}, Target: "r/app:v1", Tags: []string{"r/app:v1", "r/app:v1-img"}},
		VerifyInput{Artifact: art, Statements: []Statement{st}},
		DeployInput{Artifact: art, Statements: []Statement{cert}, Admission: Admission{Namespace: "ns", Kind: "Pod", Name: "p", Container: "c", Image: "i"}},
	} {
		got, err := in.value()
		if err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		var generic any
		if err := json.Unmarshal(b, &generic); err != nil {
			t.Fatal(err)
		}
		want, err := ast.InterfaceToValue(generic)
		if err != nil {
			t.Fatal(err)
		}
		if got.Compare(want) != 0 {
			t.Errorf("%T:\n got %v\nwant %v", in, got, want)
		}
	}
	// Where JSON would say null, policies see an empty array or object, so count() and iteration need no guard.
	v, err := BuildInput{}.value()
	if err != nil {
		t.Fatal(err)
	}
	if got := v.String(); got != `{"builder": {"digest": "", "id": "", "image": ""}, "params": {}, "pipeline": {"digest": "", "fromSource": false, "name": "", "path": "", "signers": []}, "source": {"digest": "", "uri": ""}}` {
		t.Errorf("zero BuildInput: %s", got)
	}
	if _, err := (VerifyInput{Statements: []Statement{{Predicate: json.RawMessage("{")}}}).value(); err == nil {
		t.Error("a malformed predicate was accepted")
	}
}
