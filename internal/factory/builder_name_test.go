package factory

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ssf-dev/ssf/internal/builder"
	"github.com/ssf-dev/ssf/internal/pipeline"
)

func writeT(t *testing.T, name, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestCheckBuilderName(t *testing.T) {
	store, err := builder.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	tree := func(body string) string {
		dir := t.TempDir()
		writeT(t, filepath.Join(dir, "bin", "sh"), body)
		return dir
	}
	old, err := store.Import(context.Background(), tree("old"), "bb")
	if err != nil {
		t.Fatal(err)
	}
	// "bb" moves on to a newer image; the old one keeps the name it was imported under.
	if _, err := store.Import(context.Background(), tree("new"), "bb"); err != nil {
		t.Fatal(err)
	}
	check := func(ref string) error {
		p, err := pipeline.Parse("ssf.yaml", []byte("apiVersion: ssf.dev/v1alpha1\nkind: Pipeline\nmetadata: {name: x}\nspec:\n"+
			"  builder: {image: "+ref+"}\n  tasks:\n    - {name: t, steps: [{name: s, run: x}], outputs: [o]}\n"))
		if err != nil {
			t.Fatal(err)
		}
		return checkBuilderName(p, store)
	}
	if err := check("bb@" + string(old.Digest)); err != nil {
		t.Errorf("the name an image was imported under, since moved on: %v", err)
	}
	err = check("distroless-official@" + string(old.Digest))
	var pe *pipeline.Error
	if !errors.As(err, &pe) || pe.Line != 5 || pe.Field != "spec.builder.image" ||
		!strings.Contains(pe.Msg, `builder name "distroless-official" is not a name the factory gave `+string(old.Digest)+", which it imported as bb") {
		t.Errorf("a name the factory never gave: %v", err)
	}
}
