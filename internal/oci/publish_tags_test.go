package oci_test

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/ssf-dev/ssf/internal/oci"
)

// A publish with a tag points the tag at the runnable image when the outputs hold exactly one, gives every image
// TAG-<name> and the files artifact TAG.files; with no image TAG is the files artifact, and with several it is too.
// Every tag names a digest the provenance signed, on the embedded registry and on one without the referrers API.
func TestPublishTags(t *testing.T) {
	tests := []struct {
		name   string
		images []string
		want   func(artifact string, image map[string]string) map[string]string // tag -> digest
	}{
		{"no image", nil, func(a string, _ map[string]string) map[string]string { return map[string]string{"v1": a} }},
		{"one image", []string{"image.tar"}, func(a string, i map[string]string) map[string]string {
			return map[string]string{"v1": i["image.tar"], "v1-image": i["image.tar"], "v1.files": a}
		}},
		{"several images", []string{"api.tar", "web/ui.tar"}, func(a string, i map[string]string) map[string]string {
			return map[string]string{"v1": a, "v1.files": a, "v1-api": i["api.tar"], "v1-web-ui": i["web/ui.tar"]}
		}},
	}
	for _, referrers := range []bool{true, false} {
		for _, tt := range tests {
			t.Run(tt.name+map[bool]string{true: ", referrers API", false: ", fallback tags"}[referrers], func(t *testing.T) {
				ctx := context.Background()
				files := map[string][]byte{"readme": []byte("hello\n")}
				for _, p := range tt.images {
					files[p] = imageTarball(t)
				}
				f := newFixture(t, files, nil)
				host, log := newRegistry(t, referrers)
				repo, tag, err := oci.ParseTarget(host + "/team/app:v1")
				if err != nil {
					t.Fatal(err)
				}
				pub, err := oci.Publish(ctx, oci.PublishRequest{Dir: f.dir, Bundle: f.bundle, Repo: repo, Tag: tag, Verify: f.verifier()})
				if err != nil {
					t.Fatal(err)
				}
				images := map[string]string{}
				for _, p := range tt.images {
					images[p] = string(f.subject(oci.ImageSubjectPrefix + p).Digest)
				}
				want := tt.want(string(f.subject(oci.ArtifactSubject).Digest), images)
				got := map[string]string{}
				for _, tg := range pub.Tags {
					got[strings.TrimPrefix(tg.Tag, host+"/team/app:")] = strings.TrimPrefix(tg.Ref, host+"/team/app@")
				}
				if !maps.Equal(got, want) {
					t.Errorf("Published.Tags = %v, want %v", got, want)
				}
				for tg, d := range want {
					desc, err := remote.Head(repo.Tag(tg))
					if err != nil || desc.Digest.String() != d {
						t.Errorf("tag %s names %v (%v), want %s", tg, desc, err, d)
					}
				}
				// Tags come last: every manifest PUT by digest (images, referrers) is before the first PUT by tag
				// other than a fallback tag, so no tag names a manifest whose provenance is not attached yet.
				log.mu.Lock()
				firstTag, lastDigest := -1, -1
				for i, r := range log.reqs {
					ref, ok := strings.CutPrefix(r, "PUT /v2/team/app/manifests/")
					switch {
					case !ok:
					case strings.HasPrefix(ref, "sha256:"), strings.HasPrefix(ref, "sha256-"):
						lastDigest = i
					case firstTag < 0:
						firstTag = i
					}
				}
				log.mu.Unlock()
				if firstTag < 0 || firstTag < lastDigest {
					t.Errorf("first tag PUT at request %d, last PUT by digest at %d: tags must come last", firstTag, lastDigest)
				}
				listed, err := remote.List(repo)
				if err != nil {
					t.Fatal(err)
				}
				listed = slices.DeleteFunc(listed, func(s string) bool { return strings.HasPrefix(s, "sha256-") }) // fallback tags
				if wantTags := slices.Sorted(maps.Keys(want)); !slices.Equal(slices.Sorted(slices.Values(listed)), wantTags) {
					t.Errorf("tags in the registry = %v, want %v", listed, wantTags)
				}
			})
		}
	}
}

// Two image outputs whose tags would be the same stop the publish before anything is pushed.
func TestPublishRefusesCollidingImageTags(t *testing.T) {
	f := newFixture(t, map[string][]byte{"a/b.tar": imageTarball(t), "a-b.tar": imageTarball(t)}, nil)
	host, _ := newRegistry(t, true)
	repo, tag, _ := oci.ParseTarget(host + "/team/app:v1")
	_, err := oci.Publish(context.Background(), oci.PublishRequest{Dir: f.dir, Bundle: f.bundle, Repo: repo, Tag: tag, Verify: f.verifier()})
	if err == nil || !strings.Contains(err.Error(), `would both be tagged "v1-a-b"`) {
		t.Fatalf("err = %v, want the colliding tag named", err)
	}
	var te *transport.Error
	if _, err := remote.List(repo); !errors.As(err, &te) || te.StatusCode != 404 {
		t.Errorf("a refused publish left the repository: %v", err)
	}
}
