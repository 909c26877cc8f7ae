package pipeline

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseDependencies(t *testing.T) {
	file := head + `  dependencies:
    - {type: gomod, path: .}
    - {type: npm, path: web/app}
    - {type: file, url: "https://example.org/x.tgz", sha256: ` + hex64 + `, dest: tools/x.tgz}
` + strings.Replace(tasks, "      steps:", "      npmScripts: true\n      steps:", 1)
	p, err := Parse("ssf.yaml", []byte(file))
	if err != nil {
		t.Fatal(err)
	}
	want := []Dependency{
		{Type: DepGomod, Path: ".", Line: 7},
		{Type: DepNpm, Path: "web/app", Line: 8},
		{Type: DepFile, URL: "https://example.org/x.tgz", SHA256: pinned, Dest: "tools/x.tgz", Line: 9},
	}
	if !reflect.DeepEqual(p.Dependencies, want) {
		t.Errorf("Dependencies = %+v\nwant %+v", p.Dependencies, want)
	}
	if !p.Tasks[0].NpmScripts {
		t.Errorf("npmScripts: true was not read")
	}
}

func TestParseDependencyErrors(t *testing.T) {
	deps := func(entries ...string) string {
		return head + "  dependencies:\n" + strings.Join(entries, "") + tasks
	}
	for _, tc := range []struct {
		name, file, field, msg string
		line                   int
	}{
		{"unknown type", deps("    - {type: pip, path: .}\n"), "spec.dependencies[0].type", `unknown dependency type "pip"`, 7},
		{"missing type", deps("    - {path: .}\n"), "spec.dependencies[0].type", "missing required field", 7},
		{"missing path", deps("    - {type: gomod}\n"), "spec.dependencies[0].path", "go.mod and go.sum", 7},
		{"absolute path", deps("    - {type: npm, path: /web}\n"), "spec.dependencies[0].path", "is absolute", 7},
		{"escaping path", deps("    - {type: npm, path: ../web}\n"), "spec.dependencies[0].path", "contains '..'", 7},
		{"hidden path", deps("    - {type: npm, path: .web}\n"), "spec.dependencies[0].path", "starting with '.'", 7},
		{"unclean path", deps("    - {type: gomod, path: a//b}\n"), "spec.dependencies[0].path", "not clean", 7},
		{"url on gomod", deps("    - {type: gomod, path: ., url: 'https://x'}\n"), "spec.dependencies[0].url", "has no url", 7},
		{"file without sha256", deps("    - {type: file, url: 'https://x.org/a', dest: a}\n"), "spec.dependencies[0].sha256", "sha256sum", 7},
		{"file bad sha256", deps("    - {type: file, url: 'https://x.org/a', sha256: abc, dest: a}\n"), "spec.dependencies[0].sha256", `invalid sha256 "abc"`, 7},
		{"file ftp url", deps("    - {type: file, url: 'ftp://x.org/a', sha256: " + hex64 + ", dest: a}\n"), "spec.dependencies[0].url", "not an http or https URL", 7},
		{"file url with user", deps("    - {type: file, url: 'https://u:p@x.org/a', sha256: " + hex64 + ", dest: a}\n"), "spec.dependencies[0].url", `"https://x.org/a" (user information left out here) carries user information`, 7},
		{"file hidden dest", deps("    - {type: file, url: 'https://x.org/a', sha256: " + hex64 + ", dest: .goproxy/x}\n"), "spec.dependencies[0].dest", "starting with '.'", 7},
		{"file path field", deps("    - {type: file, url: 'https://x.org/a', sha256: " + hex64 + ", dest: a, path: .}\n"), "spec.dependencies[0].path", "has no path", 7},
		{"duplicate dest", deps("    - {type: file, url: 'https://x.org/a', sha256: "+hex64+", dest: a}\n",
			"    - {type: file, url: 'https://x.org/b', sha256: "+hex64+", dest: a}\n"), "spec.dependencies[1]", "again (first at line 7)", 8},
		{"duplicate gomod", deps("    - {type: gomod, path: .}\n", "    - {type: gomod, path: .}\n"), "spec.dependencies[1]", "again", 8},
		{"not a list", head + "  dependencies: {type: gomod}\n" + tasks, "spec.dependencies", "expected a list", 6},
		{"npmScripts not a bool", strings.Replace(valid, "      steps:", "      npmScripts: yes\n      steps:", 1), "spec.tasks[0].npmScripts", "expected true or false", 8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("ssf.yaml", []byte(tc.file))
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Parse() error = %v, want an *Error", err)
			}
			if e.Line != tc.line || e.Field != tc.field || !strings.Contains(e.Msg, tc.msg) {
				t.Errorf("Parse() error = %q\nwant line %d, field %q, message containing %q", err, tc.line, tc.field, tc.msg)
			}
		})
	}
}

// A credential in a file URL is refused without being printed back.
func TestFileURLCredentialIsNotEchoed(t *testing.T) {
	file := head + "  dependencies:\n    - {type: file, url: 'https://user:s3cret@x.org/a', sha256: " + hex64 + ", dest: a}\n" + tasks
	_, err := Parse("ssf.yaml", []byte(file))
	if err == nil || strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "user:") {
		t.Errorf("Parse() error = %v, want a refusal that does not repeat the credential", err)
	}
}
