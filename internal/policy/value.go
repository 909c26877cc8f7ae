package policy

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"slices"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/open-policy-agent/opa/v1/ast"
)

// The input types build OPA's values directly, with the same names as their json tags (checked by
// TestInputValuesMatchJSON): a JSON round trip cost half of each decision.

type valuer interface{ value() (ast.Value, error) }

var (
	_ valuer = BuildInput{}
	_ valuer = DepsInput{}
	_ valuer = PublishInput{}
	_ valuer = VerifyInput{}
	_ valuer = DeployInput{}
)

func obj(kv ...any) *ast.Term {
	terms := make([][2]*ast.Term, 0, len(kv)/2)
	for i := 0; i < len(kv); i += 2 {
		terms = append(terms, [2]*ast.Term{ast.StringTerm(kv[i].(string)), kv[i+1].(*ast.Term)})
	}
	return ast.ObjectTerm(terms...)
}

func strs(ss []string) *ast.Term {
	terms := make([]*ast.Term, len(ss))
	for i, s := range ss {
		terms[i] = ast.StringTerm(s)
	}
	return ast.ArrayTerm(terms...)
}

func strMap(m map[string]string) *ast.Term {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	terms := make([][2]*ast.Term, len(keys))
	for i, k := range keys {
		terms[i] = [2]*ast.Term{ast.StringTerm(k), ast.StringTerm(m[k])}
	}
	return ast.ObjectTerm(terms...)
}

func (in BuildInput) value() (ast.Value, error) {
	p := in.Pipeline
	return obj(
		"pipeline", obj("name", ast.StringTerm(p.Name), "digest", ast.StringTerm(p.Digest), "path", ast.StringTerm(p.Path),
			"fromSource", ast.BooleanTerm(p.FromSource), "signers", strs(p.Signers)),
		"params", strMap(in.Params),
		"source", source(in.Source),
		"builder", obj("id", ast.StringTerm(in.Builder.ID), "image", ast.StringTerm(in.Builder.Image), "digest", ast.StringTerm(in.Builder.Digest)),
	).Value, nil
}

func source(s Source) *ast.Term {
	return obj("uri", ast.StringTerm(s.URI), "digest", ast.StringTerm(s.Digest))
}

func (in DepsInput) value() (ast.Value, error) {
	d := in.Dependency
	return obj("dependency", obj("type", ast.StringTerm(d.Type), "name", ast.StringTerm(d.Name), "version", ast.StringTerm(d.Version),
		"purl", ast.StringTerm(d.PURL), "url", ast.StringTerm(d.URL), "digest", ast.StringTerm(d.Digest))).Value, nil
}

func (in PublishInput) value() (ast.Value, error) {
	outs := make([]*ast.Term, len(in.Outputs))
	for i, o := range in.Outputs {
		outs[i] = obj("name", ast.StringTerm(o.Name), "digest", ast.StringTerm(o.Digest))
	}
	sts, err := statements(in.Statements)
	if err != nil {
		return nil, err
	}
	return obj("outputs", ast.ArrayTerm(outs...), "statements", sts, "target", ast.StringTerm(in.Target), "tags", strs(in.Tags)).Value, nil
}

func (in VerifyInput) value() (ast.Value, error) {
	sts, err := statements(in.Statements)
	if err != nil {
		return nil, err
	}
	return obj("artifact", artifact(in.Artifact), "statements", sts).Value, nil
}

func (in DeployInput) value() (ast.Value, error) {
	sts, err := statements(in.Statements)
	if err != nil {
		return nil, err
	}
	a := in.Admission
	return obj("artifact", artifact(in.Artifact), "statements", sts,
		"admission", obj("namespace", ast.StringTerm(a.Namespace), "kind", ast.StringTerm(a.Kind), "name", ast.StringTerm(a.Name),
			"container", ast.StringTerm(a.Container), "image", ast.StringTerm(a.Image))).Value, nil
}

func artifact(a Artifact) *ast.Term {
	return obj("uri", ast.StringTerm(a.URI), "digest", ast.StringTerm(a.Digest))
}

func statements(sts []Statement) (*ast.Term, error) {
	terms := make([]*ast.Term, len(sts))
	for i, s := range sts {
		subjects := make([]*ast.Term, len(s.Subject))
		for j, sub := range s.Subject {
			subjects[j] = obj("name", ast.StringTerm(sub.Name), "digest", strMap(sub.Digest))
		}
		pred := ast.NullTerm()
		if len(s.Predicate) > 0 {
			v, err := predicateValue(s.Predicate)
			if err != nil {
				return nil, fmt.Errorf("statement %d (%s): predicate: %w", i, s.PredicateType, err)
			}
			pred = ast.NewTerm(v)
		}
		signer := make([]any, 0, 6)
		for _, kv := range [][2]string{{"key", s.Signer.Key}, {"identity", s.Signer.Identity}, {"issuer", s.Signer.Issuer}} {
			if kv[1] != "" { // omitempty, as in JSON
				signer = append(signer, kv[0], ast.StringTerm(kv[1]))
			}
		}
		kv := []any{"_type", ast.StringTerm(s.Type), "subject", ast.ArrayTerm(subjects...), "predicateType", ast.StringTerm(s.PredicateType),
			"predicate", pred, "signer", obj(signer...)}
		if s.LinkedBy != "" { // omitempty, as in JSON
			kv = append(kv, "linkedBy", ast.StringTerm(s.LinkedBy))
		}
		terms[i] = obj(kv...)
	}
	return ast.ArrayTerm(terms...), nil
}

// predicates memoises parsed predicates by the SHA-256 of their bytes: the same statements are decided again and
// again (each container of each Pod of an image, each gate of a build), and parsing a provenance's JSON cost more
// than deciding on it. A pure function of the bytes, so one cache serves every Set; OPA's values are immutable and
// safe to share between concurrent evaluations.
var predicates, _ = lru.New[[sha256.Size]byte, ast.Value](predicateCacheEntries)

const (
	predicateCacheEntries = 256
	predicateCacheMax     = 64 << 10 // larger predicates (big SBOMs) are parsed each time, so the cache stays small
)

func predicateValue(raw []byte) (ast.Value, error) {
	if len(raw) > predicateCacheMax {
		return ast.ValueFromReader(bytes.NewReader(raw))
	}
	key := sha256.Sum256(raw)
	if v, ok := predicates.Get(key); ok {
		return v, nil
	}
	v, err := ast.ValueFromReader(bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	predicates.Add(key, v)
	return v, nil
}
