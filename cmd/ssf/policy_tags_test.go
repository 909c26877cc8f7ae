package main

import (
	"net/http"
	"strings"
	"testing"
)

// TestPublishPolicySeesEveryTag: ssf.publish's input.tags holds every tag the publish pushes, those made from the
// target's and the image outputs' names included (a step names its outputs, so it chose v1-latest here); a rule
// against a tag stops the publish with nothing pushed. Before input.tags, the gate saw the target's tag alone.
func TestPublishPolicySeesEveryTag(t *testing.T) {
	p := newProject(t, `
    - name: pack
      steps:
        - name: copy
          run: cp image.tar "$SSF_OUTPUTS/latest.tar"
      outputs: [latest.tar]
`)
	reg := startRegistry(t)
	p.write()
	p.addRandomImage("image.tar", 1024)
	pol := writePolicy(t, map[string]string{"publish.rego": `package ssf.publish

deny contains msg if {
	some tag in input.tags
	endswith(tag, "latest")
	msg := sprintf("no tag ends in latest: %s (all: %s)", [tag, concat(" ", input.tags)])
}
`})
	r := p.build("--policy", pol, "--publish", reg.host+"/team/image:v1")
	tags := reg.host + "/team/image:v1.files " + reg.host + "/team/image:v1 " + reg.host + "/team/image:v1-latest"
	if r.code != 1 || !strings.Contains(r.stderr, "no tag ends in latest: "+reg.host+"/team/image:v1-latest (all: "+tags+")") {
		t.Fatalf("build --publish: exit %d, want 1 with the denial of v1-latest among %s\n%s", r.code, tags, r.stderr)
	}
	if resp, body := reg.get(t, "team/image/tags/list", true); resp.StatusCode != http.StatusNotFound {
		t.Errorf("a denied publish pushed something: %s %s", resp.Status, body)
	}
}
