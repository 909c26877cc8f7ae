package ca

import (
	"strings"
	"testing"
)

// FuzzCheckWorkloadID: a SPIFFE ID accepted as a workload's is in the trust domain, has the workload form, and
// holds nothing a URL parser, a path or a terminal could read differently (no '..', no escapes, no controls).
func FuzzCheckWorkloadID(f *testing.F) {
	for _, s := range []string{"spiffe://ssf.local/pipeline/hello", "spiffe://ssf.local/pipeline/a/task/b",
		"spiffe://ssf.local/pipeline/../x", "spiffe://evil/pipeline/x", "spiffe://ssf.local/pipeline/a%2fb",
		"spiffe://ssf.local/pipeline/a?b", "spiffe://ssf.local/pipeline/a#b", "spiffe://user@ssf.local/pipeline/a"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		if CheckWorkloadID("ssf.local", id) != nil {
			return
		}
		if id == "spiffe://ssf.local/verifier" {
			return
		}
		rest, ok := strings.CutPrefix(id, "spiffe://ssf.local/pipeline/")
		if !ok {
			t.Fatalf("accepted %q outside spiffe://ssf.local/pipeline/", id)
		}
		seg := strings.Split(rest, "/")
		if !(len(seg) == 1 || len(seg) == 3 && seg[1] == "task") {
			t.Fatalf("accepted %q, not of a workload's form", id)
		}
		for _, s := range seg {
			if s == "" || s == "." || s == ".." || strings.ContainsAny(s, "%?#@:\\ ") {
				t.Fatalf("accepted %q with segment %q", id, s)
			}
		}
	})
}
