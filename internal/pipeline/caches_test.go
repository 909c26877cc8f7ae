package pipeline

import (
	"errors"
	"path"
	"reflect"
	"strings"
	"testing"
)

// withCaches is valid with the given caches: entries on the task, from line 10.
func withCaches(entries ...string) string {
	return valid + "      caches:\n" + strings.Join(entries, "")
}

func TestParseCaches(t *testing.T) {
	p, err := Parse("ssf.yaml", []byte(withCaches("      - {name: go, path: /tmp/gocache}\n", "      - {name: npm-2, path: /root/.npm}\n")))
	if err != nil {
		t.Fatal(err)
	}
	want := []Cache{{Name: "go", Path: "/tmp/gocache", Line: 11}, {Name: "npm-2", Path: "/root/.npm", Line: 12}}
	if !reflect.DeepEqual(p.Tasks[0].Caches, want) {
		t.Errorf("Caches = %+v, want %+v", p.Tasks[0].Caches, want)
	}
}

func TestParseCacheErrors(t *testing.T) {
	for _, tc := range []struct {
		name, file, field, msg string
		line                   int
	}{
		{"not a list", valid + "      caches: {name: go}\n", "spec.tasks[0].caches", "expected a list", 10},
		{"unknown field", withCaches("      - {name: go, path: /tmp/g, key: x}\n"), "spec.tasks[0].caches[0].key", "unknown field", 11},
		{"missing name", withCaches("      - {path: /tmp/g}\n"), "spec.tasks[0].caches[0].name", "missing required field", 11},
		{"missing path", withCaches("      - {name: go}\n"), "spec.tasks[0].caches[0].path", "/tmp/gocache", 11},
		{"bad name", withCaches("      - {name: Go/x, path: /tmp/g}\n"), "spec.tasks[0].caches[0].name", `invalid cache name "Go/x"`, 11},
		{"relative path", withCaches("      - {name: go, path: tmp/g}\n"), "spec.tasks[0].caches[0].path", "is relative", 11},
		{"unclean path", withCaches("      - {name: go, path: /tmp/../etc}\n"), "spec.tasks[0].caches[0].path", `write "/etc"`, 11},
		{"trailing slash", withCaches("      - {name: go, path: /tmp/g/}\n"), "spec.tasks[0].caches[0].path", "not clean", 11},
		{"root", withCaches("      - {name: go, path: /}\n"), "spec.tasks[0].caches[0].path", "container's root", 11},
		{"tmp itself", withCaches("      - {name: go, path: /tmp}\n"), "spec.tasks[0].caches[0].path", "directory under it", 11},
		{"workspace", withCaches("      - {name: go, path: /workspace/.cache}\n"), "spec.tasks[0].caches[0].path", "overlaps /workspace", 11},
		{"outputs", withCaches("      - {name: go, path: /outputs}\n"), "spec.tasks[0].caches[0].path", "overlaps /outputs", 11},
		{"inputs", withCaches("      - {name: go, path: /inputs/build}\n"), "spec.tasks[0].caches[0].path", "overlaps /inputs", 11},
		{"deps", withCaches("      - {name: go, path: /deps}\n"), "spec.tasks[0].caches[0].path", "overlaps /deps", 11},
		{"secrets", withCaches("      - {name: go, path: /run/secrets/x}\n"), "spec.tasks[0].caches[0].path", "overlaps /run/secrets", 11},
		{"above secrets", withCaches("      - {name: go, path: /run}\n"), "spec.tasks[0].caches[0].path", "overlaps /run/secrets", 11},
		{"proc", withCaches("      - {name: go, path: /proc/self}\n"), "spec.tasks[0].caches[0].path", "overlaps /proc", 11},
		{"sys", withCaches("      - {name: go, path: /sys}\n"), "spec.tasks[0].caches[0].path", "overlaps /sys", 11},
		{"dev", withCaches("      - {name: go, path: /dev/shm}\n"), "spec.tasks[0].caches[0].path", "overlaps /dev", 11},
		{"npm cache", withCaches("      - {name: go, path: /tmp/.npm}\n"), "spec.tasks[0].caches[0].path", "overlaps /tmp/.npm", 11},
		{"in npm cache", withCaches("      - {name: go, path: /tmp/.npm/_cacache/index-v5}\n"), "spec.tasks[0].caches[0].path", "overlaps /tmp/.npm", 11},
		{"control character", withCaches("      - {name: go, path: \"/tmp/a\\tb\"}\n"), "spec.tasks[0].caches[0].path", "control", 11},
		{"bidi", withCaches("      - {name: go, path: \"/tmp/a\\u202eb\"}\n"), "spec.tasks[0].caches[0].path", "invisible", 11},
		{"duplicate name", withCaches("      - {name: go, path: /tmp/a}\n", "      - {name: go, path: /tmp/b}\n"), "spec.tasks[0].caches[1].name", "duplicate cache name \"go\" (first at line 11)", 12},
		{"same path", withCaches("      - {name: a, path: /tmp/a}\n", "      - {name: b, path: /tmp/a}\n"), "spec.tasks[0].caches[1].path", "overlaps the path", 12},
		{"nested path", withCaches("      - {name: a, path: /tmp/a}\n", "      - {name: b, path: /tmp/a/b}\n"), "spec.tasks[0].caches[1].path", `cache "a" at line 11`, 12},
		{"too many", withCaches(strings.Repeat("      - {name: a, path: /tmp/a}\n", 9)), "spec.tasks[0].caches", "at most 8", 11},
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

// Whatever badCachePath accepts is a clean absolute directory below / and away from every path ssf mounts itself.
func FuzzBadCachePath(f *testing.F) {
	for _, s := range []string{"/tmp/gocache", "/", "/tmp", "/run", "/workspace/x", "tmp/x", "/a/../b", "/tmp//x", "/dev"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if badCachePath(p) != "" {
			return
		}
		if !strings.HasPrefix(p, "/") || path.Clean(p) != p || p == "/" || p == "/tmp" {
			t.Fatalf("accepted %q", p)
		}
		for _, r := range reservedCachePaths {
			if p == r || strings.HasPrefix(p, r+"/") || strings.HasPrefix(r, p+"/") {
				t.Fatalf("accepted %q, which overlaps %s", p, r)
			}
		}
	})
}

func TestParseCachesSeed(t *testing.T) {
	p, err := Load("testdata/caches.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Tasks[0].Caches) != 2 || p.Tasks[1].Caches[0].Path != "/var/cache/go" {
		t.Errorf("caches = %+v, %+v", p.Tasks[0].Caches, p.Tasks[1].Caches)
	}
}
