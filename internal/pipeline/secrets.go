package pipeline

import (
	"go.yaml.in/yaml/v3"

	"github.com/ssf-dev/ssf/internal/secret"
)

// maxSecrets bounds the secrets of one task: each is a file of up to 64 KiB on a tmpfs of the task's own.
const maxSecrets = 64

// secrets reads a task's `secrets: [NAME, ...]`: the names of factory secrets (`ssf secret set NAME`) the task
// gets as files /run/secrets/NAME. Only the names are in the pipeline; whether each is set is checked when a
// build is admitted, before any task runs.
func (d *decoder) secrets(n *yaml.Node, path string) ([]string, error) {
	items, err := d.list(n, path)
	if err != nil {
		return nil, err
	}
	if len(items) > maxSecrets {
		return nil, d.errAt(n, path, "a task may list at most %d secrets", maxSecrets)
	}
	seen := map[string]bool{}
	var names []string
	for i, item := range items {
		field := index(path, i)
		s, err := d.str(item, field)
		if err != nil {
			return nil, err
		}
		if err := secret.CheckName(s); err != nil {
			return nil, d.errAt(item, field, "%v", err)
		}
		if seen[s] {
			return nil, d.errAt(item, field, "secret %s is listed twice", quote(s))
		}
		seen[s] = true
		names = append(names, s)
	}
	return names, nil
}
