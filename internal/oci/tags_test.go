package oci

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
)

// The tag scheme of a publish: what TAG, TAG.files and TAG-<name> name for no, one and several image outputs.
func TestTags(t *testing.T) {
	tests := []struct {
		name      string
		tag       string
		images    []string
		files     []string
		imageTags map[string]string
		err       string
	}{
		{name: "no tag", tag: "", images: []string{"image.tar"}, imageTags: map[string]string{}},
		{name: "no image", tag: "v1", files: []string{"v1"}, imageTags: map[string]string{}},
		{name: "one image", tag: "v1", images: []string{"image.tar"}, files: []string{"v1.files"},
			imageTags: map[string]string{"image.tar": "v1-image"}},
		{name: "several images", tag: "v1", images: []string{"dist/api.tar", "web+ui.tar", "x"},
			files:     []string{"v1", "v1.files"},
			imageTags: map[string]string{"dist/api.tar": "v1-dist-api", "web+ui.tar": "v1-web-ui", "x": "v1-x"}},
		{name: "collision", tag: "v1", images: []string{"a/b.tar", "a-b.tar"}, err: `would both be tagged "v1-a-b"`},
		{name: "too long", tag: strings.Repeat("t", 120), images: []string{"image-output.tar"}, err: "longer than 128"},
		{name: "files tag too long", tag: strings.Repeat("t", 124), images: []string{"i"}, err: "longer than 128"},
		// A tag of cosign's fallback form would replace the referrers list (or a cosign signature) of another
		// manifest on a registry without the referrers API.
		{name: "fallback tag, no image", tag: "sha256-" + strings.Repeat("ab", 32), err: "cosign's fallback"},
		{name: "fallback tag, one image", tag: "sha256-" + strings.Repeat("ab", 32), images: []string{"i.tar"}, err: "cosign's fallback"},
		{name: "cosign signature tag", tag: "sha256-" + strings.Repeat("AB", 32) + ".sig", err: "cosign's fallback"},
		{name: "image tag of fallback form", tag: "sha256", images: []string{strings.Repeat("0", 64) + ".tar"}, err: "cosign's fallback"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files, images, err := Tags(tt.tag, tt.images)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("Tags(%q, %q) error = %v, want one containing %q", tt.tag, tt.images, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(files, tt.files) || !maps.Equal(images, tt.imageTags) {
				t.Errorf("Tags(%q, %q) = %q, %q; want %q, %q", tt.tag, tt.images, files, images, tt.files, tt.imageTags)
			}
			for _, tag := range append(files, slices.Collect(maps.Values(images))...) {
				if _, err := name.NewTag("example.com/app:"+tag, name.StrictValidation); err != nil || strings.HasPrefix(tag, "sha256-") {
					t.Errorf("tag %q is not a valid tag, or looks like cosign's fallback tag", tag)
				}
			}
		})
	}
}
