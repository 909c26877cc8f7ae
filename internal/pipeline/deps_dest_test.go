package pipeline

import (
	"errors"
	"strings"
	"testing"
)

// Two file dependencies whose dests would make one file the other's directory are refused at their line, not
// after every dependency was fetched, when the tree cannot be laid out.
func TestFileDestsDoNotNest(t *testing.T) {
	file := head + "  dependencies:\n" +
		"    - {type: file, url: 'https://x.org/a', sha256: " + hex64 + ", dest: tools}\n" +
		"    - {type: file, url: 'https://x.org/b', sha256: " + hex64 + ", dest: tools/b}\n" + tasks
	_, err := Parse("ssf.yaml", []byte(file))
	var e *Error
	if !errors.As(err, &e) || e.Line != 8 || e.Field != "spec.dependencies[1].dest" || !strings.Contains(e.Msg, "line 7") {
		t.Fatalf("Parse() error = %v, want spec.dependencies[1].dest at line 8 naming line 7", err)
	}
	// Names that only share a prefix are apart.
	file = strings.Replace(file, "dest: tools/b", "dest: tools-b", 1)
	if _, err := Parse("ssf.yaml", []byte(file)); err != nil {
		t.Errorf("tools and tools-b: %v", err)
	}
}
