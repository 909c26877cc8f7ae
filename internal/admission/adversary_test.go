package admission_test

import (
	"context"
	"strings"
	"testing"

	"github.com/ssf-dev/ssf/internal/policy"
)

// ownDeployPolicy is the default set with ssf.deploy replaced by a rule a platform team might write: only images
// built from its own source repository. It says nothing about tags.
func ownDeployPolicy(t *testing.T) *policy.Set {
	t.Helper()
	var files []policy.File
	for _, f := range policy.DefaultFiles() {
		if !strings.HasPrefix(f.Name, "deploy") {
			files = append(files, f)
		}
	}
	files = append(files, policy.File{Name: "deploy.rego", Data: []byte(`package ssf.deploy

deny contains msg if {
	startswith(input.artifact.uri, "evil.example.com/")
	msg := "nothing from evil.example.com"
}
`)})
	set, err := policy.Compile(context.Background(), "own", files)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// TestValidateDeniesATagWhateverThePolicy: /validate verified the digest a tag named when it asked, then admitted
// the tag: the kubelet pulls the tag later, and the registry may serve another image for it by then. Only the
// default policy's "not named by digest" rule stood in the way; a set without it admitted the tag.
func TestValidateDeniesATagWhateverThePolicy(t *testing.T) {
	w := newWorld(t)
	h := newHandler(t, w.fac.trust(t), ownDeployPolicy(t))
	// The digest itself is admitted under this policy.
	if rv, _, body := post(t, h, "/validate/enforce", reviewJSON(t, "CREATE", objectOf("Pod", "web", podSpec([]string{"app=" + w.good}, nil, nil)))); rv == nil || !rv.Response.Allowed {
		t.Fatalf("the factory's image by digest was not admitted: %s", body)
	}
	tagged := w.reg.host + "/team/app:v1"
	rv, _, body := post(t, h, "/validate/enforce", reviewJSON(t, "CREATE", objectOf("Pod", "web", podSpec([]string{"app=" + tagged}, nil, nil))))
	if rv == nil || rv.Response.Allowed {
		t.Fatalf("a Pod naming %s by tag was admitted: %s", tagged, body)
	}
	if want := `container "app" (image "` + tagged + `"): image: named by tag`; !strings.Contains(rv.Response.Result.Message, want) {
		t.Errorf("denial %q\ndoes not say %q", rv.Response.Result.Message, want)
	}
}
