package policy

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/tester"
)

// TestResult is the outcome of one Rego unit test (a rule named test_* in a *_test.rego file).
type TestResult struct {
	Package  string
	Name     string
	Location string // FILE:LINE
	Pass     bool
	Err      error // the test could not run (e.g. it timed out); Pass is then false
	Duration time.Duration

	file string
	line int
}

// Test compiles the whole set, its *_test.rego files included, under the same restricted capabilities as Load,
// and runs its unit tests, each within timeout.
func Test(ctx context.Context, dir string, timeout time.Duration) ([]TestResult, error) {
	files, err := ReadDir(dir)
	if err != nil {
		return nil, err
	}
	mods, problems := parse(files, true)
	if len(problems) > 0 {
		return nil, &LoadError{Dir: dir, Problems: problems}
	}
	c := newCompiler()
	if c.Compile(mods); c.Failed() {
		return nil, &LoadError{Dir: dir, Problems: astProblems(c.Errors)}
	}
	store := inmem.New() // no data: policies see only their input, as in Evaluate
	txn, err := store.NewTransaction(ctx)
	if err != nil {
		return nil, fmt.Errorf("running the tests of policy %s: %w", dir, err)
	}
	defer store.Abort(ctx, txn)
	ch, err := tester.NewRunner().SetCompiler(newCompiler()).SetStore(store).SetModules(mods).SetTimeout(timeout).RunTests(ctx, txn)
	if err != nil {
		return nil, fmt.Errorf("running the tests of policy %s: %w", dir, err)
	}
	var out []TestResult
	for r := range ch {
		tr := TestResult{Package: strings.TrimPrefix(r.Package, "data."), Name: r.Name, Pass: r.Pass(), Err: r.Error, Duration: r.Duration}
		if r.Location != nil {
			tr.Location = fmt.Sprintf("%s:%d", r.Location.File, r.Location.Row)
			tr.file, tr.line = r.Location.File, r.Location.Row
		}
		out = append(out, tr)
	}
	// The runner may run tests in parallel: report them in the order they are written.
	slices.SortStableFunc(out, func(a, b TestResult) int {
		return cmp.Or(cmp.Compare(a.file, b.file), cmp.Compare(a.line, b.line), cmp.Compare(a.Name, b.Name))
	})
	if err := ctx.Err(); err != nil {
		return out, err
	}
	return out, nil
}
