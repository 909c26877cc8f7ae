package home

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestLayout(t *testing.T) {
	l := Layout{Dir: "/h"}
	for got, want := range map[string]string{
		l.Config(): "/h/config.yaml", l.Key(): "/h/keys/provenance.key", l.Images(): "/h/images",
		l.RootfsCache(): "/h/cache/rootfs", l.RuntimeState(): "/h/runc", l.Runs(): "/h/runs", l.Registry(): "/h/registry",
	} {
		if got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
}

func TestDefault(t *testing.T) {
	t.Setenv("SSF_HOME", "rel/home")
	l, err := Default()
	if err != nil || !filepath.IsAbs(l.Dir) || !strings.HasSuffix(l.Dir, "/rel/home") {
		t.Errorf("Default() = %q, %v; want $SSF_HOME made absolute", l.Dir, err)
	}
	t.Setenv("SSF_HOME", "")
	t.Setenv("HOME", "/home/u")
	if l, err := Default(); err != nil || l.Dir != "/home/u/.ssf" {
		t.Errorf("Default() = %q, %v; want ~/.ssf", l.Dir, err)
	}
}
