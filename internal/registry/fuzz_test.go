package registry

import (
	"encoding/json"
	"testing"
)

func FuzzParseManifest(f *testing.F) {
	d := "sha256:" + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	f.Add(mediaTypeOCIManifest, `{"schemaVersion":2,"mediaType":"`+mediaTypeOCIManifest+`","config":{"mediaType":"a/b","digest":"`+d+`","size":2},"layers":[]}`)
	f.Add(mediaTypeOCIIndex, `{"schemaVersion":2,"manifests":[{"mediaType":"a/b","digest":"`+d+`","size":1}],"subject":{"mediaType":"a/b","digest":"`+d+`","size":1}}`)
	f.Add(mediaTypeDockerManifest, `{"schemaVersion":2,"config":{"mediaType":"a","digest":"sha512:00","size":-1}}`)
	f.Add("", `{"schemaVersion":1}`)
	f.Add("text/plain; charset=utf-8", `[]`)
	f.Add(mediaTypeOCIManifest, `{"schemaVersion":2,"config":{"mediaType":"a","digest":"../../etc/passwd","size":1}}`)
	f.Fuzz(func(t *testing.T, contentType, body string) {
		m, err := parseManifest(contentType, []byte(body))
		if err != nil {
			if m != nil {
				t.Fatal("error with a manifest")
			}
			return
		}
		// Whatever is accepted is JSON of a supported type, and every digest it names is well-formed (safe
		// to turn into a path).
		if !json.Valid([]byte(body)) {
			t.Fatal("accepted invalid JSON")
		}
		switch m.mediaType {
		case mediaTypeOCIManifest, mediaTypeOCIIndex, mediaTypeDockerManifest, mediaTypeDockerList:
		default:
			t.Fatalf("accepted media type %q", m.mediaType)
		}
		for _, r := range append(append([]ref{}, m.blobs...), m.children...) {
			if _, err := parseDigest(r.d.String()); err != nil || r.size < 0 {
				t.Fatalf("accepted descriptor %v: %v", r, err)
			}
		}
		if m.isIndex && len(m.blobs) != 0 || !m.isIndex && len(m.children) != 0 {
			t.Fatalf("mixed manifest kinds: %+v", m)
		}
		for _, d := range referencedDigests([]byte(body)) {
			if _, err := parseDigest(d.String()); err != nil {
				t.Fatal(err)
			}
		}
	})
}

func FuzzParsePath(f *testing.F) {
	for _, p := range []string{"/v2/", "/v2/a/b/blobs/uploads/", "/v2/a/manifests/v1", "/v2/../x/tags/list",
		"/v2/a/blobs/uploads/0123", "/v2/a/referrers/sha256:00"} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, p string) {
		rt, ok := parsePath(p)
		if !ok || rt.kind == "base" || !validName(rt.name) {
			return
		}
		// A name that passes validation has no component a path could escape with.
		s := store{dir: "/reg"}
		dir := s.repoDir(rt.name)
		if len(dir) <= len("/reg/repos/") || dir[:len("/reg/repos/")] != "/reg/repos/" {
			t.Fatalf("name %q maps to %q", rt.name, dir)
		}
	})
}
