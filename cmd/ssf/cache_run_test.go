package main

import (
	"strings"
	"testing"
)

// A build whose cached task succeeded and whose next task failed ends cleanly: its cache store (under way in the
// background, or done) is cancelled or finished before the task's disk and the build's directories go, and a
// build after it runs with the cache in a consistent state (warm with what the task wrote, or empty).
func TestCacheStoreEndsWithAFailedRun(t *testing.T) {
	p := newProject(t, cacheTask+`    - name: check
      needs: [build]
      steps: [{name: fail, run: 'echo check failed; exit 3'}]
      outputs: [never]
`)
	p.paramDef = wordParam
	p.mustFail(`task "check"`)
	p.params = []string{"word=two"}
	p.tasks = cacheTask
	p.rebuild()
	if got := p.output("before"); got != "" && got != "one\n" {
		t.Errorf("the build after a failed one got a cache holding %q, want nothing or what the succeeded task wrote", got)
	}
	if e := cacheEntry(t, p); !strings.Contains("warm empty", e["annotations"].(map[string]any)["state"].(string)) {
		t.Errorf("cache entry = %v, want warm or empty", e)
	}
}
