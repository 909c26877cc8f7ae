package pipeline_test

import (
	"fmt"

	"github.com/ssf-dev/ssf/internal/pipeline"
)

func ExampleParse() {
	file := []byte(`apiVersion: ssf.dev/v1alpha1
kind: Pipeline
metadata: {name: hello}
spec:
  builder: {image: go@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef}
  params:
    - {name: greeting, default: hello, pattern: '^[a-z]+$'}
  tasks:
    - name: test
      needs: [build]
      steps: [{name: vet, run: go vet ./...}]
      outputs: [vet.txt]
    - name: build
      steps:
        - name: make
          run: go build -o "$SSF_OUTPUTS/hello" .
      outputs: [hello]
`)
	p, err := pipeline.Parse("ssf.yaml", file)
	if err != nil {
		fmt.Println(err)
		return
	}
	params, err := p.ResolveParams([]string{"greeting=hi"})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(p.Name, "built by", p.BuilderName)
	for _, prm := range p.Params {
		fmt.Printf("%s=%s\n", pipeline.EnvName(prm.Name), params[prm.Name])
	}
	for _, t := range p.Order() {
		fmt.Println(t.Name, t.Timeout, t.Outputs)
	}

	_, err = pipeline.Parse("ssf.yaml", []byte("apiVersion: ssf.dev/v1alpha1\nkind: Pipeline\nmetadata: {name: Hello}\n"))
	fmt.Println(err)
	// Output:
	// hello built by go
	// SSF_PARAM_GREETING=hi
	// build 30m0s [hello]
	// test 30m0s [vet.txt]
	// ssf.yaml:3: metadata.name: invalid name "Hello": use 1 to 63 lower-case letters, digits, '-' and '_', starting with a letter or digit
}
