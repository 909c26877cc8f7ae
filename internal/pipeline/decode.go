package pipeline

import (
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"
	"time"
	"unicode"

	"go.yaml.in/yaml/v3"

	"github.com/ssf-dev/ssf/internal/content"
)

var (
	// nameRE is for the pipeline, task and step names, which end up in paths, logs and SPIFFE IDs.
	nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	// paramNameRE keeps param names one-to-one with their SSF_PARAM_ variable names.
	paramNameRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)
	envKeyRE    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	imageNameRE = regexp.MustCompile(`^[a-z0-9]+([._/-][a-z0-9]+)*$`)
)

// pipeline reads the top-level mapping into p.
func (d *decoder) pipeline(root *yaml.Node, p *Pipeline) error {
	if root.Kind != yaml.MappingNode {
		return d.errAt(root, "", "the file must be a mapping with apiVersion, kind, metadata and spec, found %s",
			describe(root))
	}
	top, err := d.fields(root, "", "apiVersion", "kind", "metadata", "spec")
	if err != nil {
		return err
	}
	if err := d.constant(top, "apiVersion", APIVersion); err != nil {
		return err
	}
	if err := d.constant(top, "kind", Kind); err != nil {
		return err
	}
	meta, err := d.required(top, "metadata", "metadata: {name: NAME}")
	if err != nil {
		return err
	}
	if p.Name, err = d.metadata(meta); err != nil {
		return err
	}
	spec, err := d.required(top, "spec", "spec: with builder and tasks")
	if err != nil {
		return err
	}
	return d.spec(spec, p)
}

// constant checks that a required field has exactly the value want.
func (d *decoder) constant(f *fields, key, want string) error {
	n, err := d.required(f, key, key+": "+want)
	if err != nil {
		return err
	}
	got, err := d.str(n, key)
	if err != nil {
		return err
	}
	if got != want {
		return d.errAt(n, key, "must be %q, found %s", want, quote(got))
	}
	return nil
}

func (d *decoder) metadata(n *yaml.Node) (string, error) {
	f, err := d.fields(n, "metadata", "name")
	if err != nil {
		return "", err
	}
	name, err := d.required(f, "name", "name: NAME")
	if err != nil {
		return "", err
	}
	return d.name(name, "metadata.name")
}

// name reads a pipeline, task or step name.
func (d *decoder) name(n *yaml.Node, path string) (string, error) {
	s, err := d.str(n, path)
	if err != nil {
		return "", err
	}
	if !nameRE.MatchString(s) {
		return "", d.errAt(n, path, "invalid name %s: use 1 to 63 lower-case letters, digits, '-' and '_', "+
			"starting with a letter or digit", quote(s))
	}
	return s, nil
}

// unique reports a name already used in the same list; seen maps each name to the line of its first use.
func (d *decoder) unique(seen map[string]int, n *yaml.Node, path, name, what string) error {
	if first, ok := seen[name]; ok {
		return d.errAt(n, path, "duplicate %s name %q (first at line %d): %s names must be unique",
			what, name, first, what)
	}
	seen[name] = n.Line
	return nil
}

func (d *decoder) spec(n *yaml.Node, p *Pipeline) error {
	f, err := d.fields(n, "spec", "builder", "params", "dependencies", "tasks")
	if err != nil {
		return err
	}
	builder, err := d.required(f, "builder", "builder: {image: NAME@sha256:HEX}")
	if err != nil {
		return err
	}
	if err := d.builder(builder, p); err != nil {
		return err
	}
	if params := f.optional("params"); params != nil {
		if p.Params, err = d.params(params); err != nil {
			return err
		}
	}
	if deps := f.optional("dependencies"); deps != nil {
		if p.Dependencies, err = d.dependencies(deps); err != nil {
			return err
		}
	}
	tasks, err := d.required(f, "tasks", "tasks: with at least one task")
	if err != nil {
		return err
	}
	p.Tasks, err = d.taskList(tasks)
	return err
}

func (d *decoder) builder(n *yaml.Node, p *Pipeline) error {
	f, err := d.fields(n, "spec.builder", "image")
	if err != nil {
		return err
	}
	image, err := d.required(f, "image", "image: NAME@sha256:HEX")
	if err != nil {
		return err
	}
	const path = "spec.builder.image"
	s, err := d.str(image, path)
	if err != nil {
		return err
	}
	name, ref, ok := strings.Cut(s, "@")
	pinned, digestErr := content.Parse(ref)
	switch {
	case !ok:
		return d.errAt(image, path, "builder must be pinned by digest: write NAME@sha256:<hex> "+
			"(ssf builder list shows digests)")
	case !imageNameRE.MatchString(name):
		return d.errAt(image, path, "invalid builder name %s: use lower-case letters and digits separated by "+
			"'.', '_', '/' or '-', and no tag (the digest pins the image)", quote(name))
	case digestErr != nil:
		return d.errAt(image, path, "invalid builder digest %s: write sha256: and 64 lower-case hex digits "+
			"(ssf builder list shows digests)", quote(ref))
	}
	p.Builder, p.BuilderName, p.BuilderDigest, p.BuilderLine = s, name, pinned, image.Line
	return nil
}

func (d *decoder) params(n *yaml.Node) ([]Param, error) {
	const path = "spec.params"
	items, err := d.list(n, path)
	if err != nil {
		return nil, err
	}
	params := make([]Param, 0, len(items))
	seen := make(map[string]int)
	for i, item := range items {
		prm, err := d.param(item, index(path, i), seen)
		if err != nil {
			return nil, err
		}
		params = append(params, prm)
	}
	return params, nil
}

func (d *decoder) param(n *yaml.Node, path string, seen map[string]int) (Param, error) {
	f, err := d.fields(n, path, "name", "default", "pattern")
	if err != nil {
		return Param{}, err
	}
	nameNode, err := d.required(f, "name", "name: NAME")
	if err != nil {
		return Param{}, err
	}
	namePath := join(path, "name")
	name, err := d.str(nameNode, namePath)
	if err != nil {
		return Param{}, err
	}
	if !paramNameRE.MatchString(name) {
		return Param{}, d.errAt(nameNode, namePath, "invalid param name %s: use 1 to 63 lower-case letters, "+
			"digits and '_', starting with a letter", quote(name))
	}
	if err := d.unique(seen, nameNode, namePath, name, "param"); err != nil {
		return Param{}, err
	}
	prm := Param{Name: name, Line: n.Line}
	if pattern := f.optional("pattern"); pattern != nil {
		if prm.Pattern, err = d.pattern(pattern, join(path, "pattern")); err != nil {
			return Param{}, err
		}
	}
	if def := f.optional("default"); def != nil {
		if err := d.paramDefault(def, join(path, "default"), &prm); err != nil {
			return Param{}, err
		}
	}
	return prm, nil
}

// paramDefault reads a default, which must pass the param's own pattern like any given value.
func (d *decoder) paramDefault(n *yaml.Node, path string, prm *Param) error {
	def, err := d.str(n, path)
	if err != nil {
		return err
	}
	if prm.Pattern != nil && !prm.Pattern.MatchString(def) {
		return d.errAt(n, path, "default %s does not match the param's pattern %q: change one of them",
			quote(def), prm.Pattern.String())
	}
	prm.Default, prm.HasDefault = def, true
	return nil
}

// pattern compiles a param's pattern, which must be anchored at both ends: an unanchored pattern
// such as "[a-z]+" also accepts "a; rm -rf /", which is almost never what its writer meant.
func (d *decoder) pattern(n *yaml.Node, path string) (*regexp.Regexp, error) {
	s, err := d.str(n, path)
	if err != nil {
		return nil, err
	}
	re, err := regexp.Compile(s)
	if err != nil {
		return nil, d.errAt(n, path, "invalid pattern %s (Go RE2 syntax): %v", quote(s), err)
	}
	if !anchored(s) {
		return nil, d.errAt(n, path, "pattern %s must match whole values: write it as %s", quote(s),
			quote("^(?:"+s+")$"))
	}
	return re, nil
}

// anchored reports whether expr is ^...$ at its top level. Checking the parsed form, not the text,
// means "^a|b$" (which matches "xb") is rejected and "^(?:a|b)$" accepted.
func anchored(expr string) bool {
	re, err := syntax.Parse(expr, syntax.Perl) // the flags regexp.Compile uses
	if err != nil || re.Op != syntax.OpConcat || len(re.Sub) < 2 {
		return false
	}
	return re.Sub[0].Op == syntax.OpBeginText && re.Sub[len(re.Sub)-1].Op == syntax.OpEndText
}

func (d *decoder) taskList(n *yaml.Node) ([]Task, error) {
	const path = "spec.tasks"
	items, err := d.list(n, path)
	if err != nil {
		return nil, err
	}
	if len(items) == 0 {
		return nil, d.errAt(n, path, "no tasks: declare at least one")
	}
	tasks := make([]Task, 0, len(items))
	seen := make(map[string]int)
	for i, item := range items {
		t, src, err := d.task(item, index(path, i), seen)
		if err != nil {
			return nil, err
		}
		tasks = append(tasks, t)
		d.tasks = append(d.tasks, src)
	}
	return tasks, nil
}

func (d *decoder) task(n *yaml.Node, path string, seen map[string]int) (Task, taskSource, error) {
	var src taskSource
	f, err := d.fields(n, path, "name", "needs", "timeout", "env", "npmScripts", "steps", "outputs", "caches", "secrets")
	if err != nil {
		return Task{}, src, err
	}
	t := Task{Line: n.Line, Timeout: DefaultTimeout}
	if t.Name, err = d.taskName(f, path, seen); err != nil {
		return Task{}, src, err
	}
	if needs := f.optional("needs"); needs != nil {
		if t.Needs, src.needs, err = d.needs(needs, join(path, "needs")); err != nil {
			return Task{}, src, err
		}
	}
	if timeout := f.optional("timeout"); timeout != nil {
		if t.Timeout, err = d.timeout(timeout, join(path, "timeout")); err != nil {
			return Task{}, src, err
		}
	}
	if env := f.optional("env"); env != nil {
		if t.Env, err = d.env(env, join(path, "env")); err != nil {
			return Task{}, src, err
		}
	}
	if v := f.optional("secrets"); v != nil {
		if t.Secrets, err = d.secrets(v, join(path, "secrets")); err != nil {
			return Task{}, src, err
		}
	}
	if v := f.optional("npmScripts"); v != nil {
		if t.NpmScripts, err = d.boolean(v, join(path, "npmScripts")); err != nil {
			return Task{}, src, err
		}
	}
	if v := f.optional("caches"); v != nil {
		if t.Caches, err = d.caches(v, join(path, "caches")); err != nil {
			return Task{}, src, err
		}
	}
	steps, err := d.required(f, "steps", "steps: with at least one {name: NAME, run: SCRIPT}")
	if err != nil {
		return Task{}, src, err
	}
	if t.Steps, err = d.steps(steps, join(path, "steps")); err != nil {
		return Task{}, src, err
	}
	// Optional: a task that only checks something (a test task) declares none (outputs.go).
	if outputs := f.optional("outputs"); outputs != nil {
		t.Outputs, src.outputs, err = d.outputs(outputs, join(path, "outputs"))
	}
	return t, src, err
}

func (d *decoder) taskName(f *fields, path string, seen map[string]int) (string, error) {
	n, err := d.required(f, "name", "name: NAME")
	if err != nil {
		return "", err
	}
	path = join(path, "name")
	name, err := d.name(n, path)
	if err != nil {
		return "", err
	}
	return name, d.unique(seen, n, path, name, "task")
}

// needs reads the list of task names; checkNeeds validates them once every task is known.
func (d *decoder) needs(n *yaml.Node, path string) ([]string, []*yaml.Node, error) {
	items, err := d.list(n, path)
	if err != nil {
		return nil, nil, err
	}
	needs := make([]string, 0, len(items))
	for i, item := range items {
		s, err := d.str(item, index(path, i))
		if err != nil {
			return nil, nil, err
		}
		needs = append(needs, s)
	}
	return needs, items, nil
}

func (d *decoder) timeout(n *yaml.Node, path string) (time.Duration, error) {
	s, err := d.str(n, path)
	if err != nil {
		return 0, err
	}
	t, err := time.ParseDuration(s)
	if err != nil {
		return 0, d.errAt(n, path, "invalid duration %s: write a number and a unit, such as 90s, 5m or 1h30m", quote(s))
	}
	if t <= 0 || t > MaxTimeout {
		return 0, d.errAt(n, path, "timeout %s is out of range: it must be more than 0 and at most %v", quote(s), MaxTimeout)
	}
	return t, nil
}

func (d *decoder) env(n *yaml.Node, path string) ([]EnvVar, error) {
	if n.Kind != yaml.MappingNode {
		return nil, d.kindError(n, path, "a mapping of variable names to values")
	}
	env := make([]EnvVar, 0, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		field := join(path, k.Value)
		if !envKeyRE.MatchString(k.Value) {
			return nil, d.errAt(k, field, "invalid variable name %s: use letters, digits and '_', "+
				"not starting with a digit", quote(k.Value))
		}
		// Case-insensitive so that no variable can even look like one of ssf's own.
		if strings.HasPrefix(strings.ToUpper(k.Value), "SSF_") {
			return nil, d.errAt(k, field, "variable names starting with SSF_ are reserved for ssf: rename %s", k.Value)
		}
		value, err := d.str(v, field)
		if err != nil {
			return nil, err
		}
		env = append(env, EnvVar{Key: k.Value, Value: value})
	}
	slices.SortFunc(env, func(a, b EnvVar) int { return strings.Compare(a.Key, b.Key) })
	return env, nil
}

func (d *decoder) steps(n *yaml.Node, path string) ([]Step, error) {
	items, err := d.list(n, path)
	if err != nil {
		return nil, err
	}
	if len(items) == 0 {
		return nil, d.errAt(n, path, "no steps: give the task at least one {name: NAME, run: SCRIPT}")
	}
	steps := make([]Step, 0, len(items))
	seen := make(map[string]int)
	for i, item := range items {
		s, err := d.step(item, index(path, i), seen)
		if err != nil {
			return nil, err
		}
		steps = append(steps, s)
	}
	return steps, nil
}

func (d *decoder) step(n *yaml.Node, path string, seen map[string]int) (Step, error) {
	f, err := d.fields(n, path, "name", "run")
	if err != nil {
		return Step{}, err
	}
	nameNode, err := d.required(f, "name", "name: NAME")
	if err != nil {
		return Step{}, err
	}
	name, err := d.name(nameNode, join(path, "name"))
	if err != nil {
		return Step{}, err
	}
	if err := d.unique(seen, nameNode, join(path, "name"), name, "step"); err != nil {
		return Step{}, err
	}
	runNode, err := d.required(f, "run", "run: with the shell script to run")
	if err != nil {
		return Step{}, err
	}
	run, err := d.str(runNode, join(path, "run"))
	if err != nil {
		return Step{}, err
	}
	if strings.TrimSpace(run) == "" {
		return Step{}, d.errAt(runNode, join(path, "run"), "run is empty: give the step a script")
	}
	return Step{Name: name, Run: run, Line: n.Line}, nil
}

// invisible reports characters that change how a name is displayed without being seen: Unicode format characters
// (category Cf: bidirectional overrides and isolates such as U+202E and U+2066–U+2069, zero-width characters such
// as U+200B, the soft hyphen, tag characters), line and paragraph separators (Zl, Zp), and spaces other than the
// ASCII space (Zs), which read as a space but compare differently. Names with them could be shown as one file
// and signed as another.
func invisible(r rune) bool {
	return unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp) || (r != ' ' && unicode.Is(unicode.Zs, r))
}

// Linux's PATH_MAX and NAME_MAX: a longer output could not be opened to be hashed.
const (
	maxPath = 4096
	maxName = 255
)
