package pipeline

import (
	"fmt"
	"strings"
)

// ParamError is a problem with the param values given for a build, such as an unknown name or a
// value that fails its pattern. Its message names the param and says how to fix the problem.
type ParamError struct {
	Param string // the param's name as given; empty if the argument had none
	Msg   string
}

// Error returns the message, which names the param itself.
func (e *ParamError) Error() string { return e.Msg }

// EnvName returns the environment variable a param reaches steps as: "SSF_PARAM_" and the
// upper-cased name. Params are never substituted into script text.
func EnvName(param string) string { return "SSF_PARAM_" + strings.ToUpper(param) }

// ResolveParams checks the param values given for a build as "name=value" strings, in order, and
// returns the value of every declared param, with defaults filled in. Every error is a *ParamError.
func (p *Pipeline) ResolveParams(args []string) (map[string]string, error) {
	values := make(map[string]string, len(p.Params))
	for _, arg := range args {
		name, value, err := p.resolveArg(arg)
		if err != nil {
			return nil, err
		}
		if _, dup := values[name]; dup {
			return nil, &ParamError{Param: name, Msg: fmt.Sprintf("param %q given twice: give it once", name)}
		}
		values[name] = value
	}
	for _, prm := range p.Params {
		if _, ok := values[prm.Name]; ok {
			continue
		}
		if !prm.HasDefault {
			return nil, &ParamError{Param: prm.Name,
				Msg: fmt.Sprintf("param %q is required: pass --param %s=VALUE", prm.Name, prm.Name)}
		}
		values[prm.Name] = prm.Default
	}
	return values, nil
}

// resolveArg splits one "name=value" and checks it against the declared param.
func (p *Pipeline) resolveArg(arg string) (name, value string, err error) {
	name, value, ok := strings.Cut(arg, "=")
	if !ok || name == "" {
		return "", "", &ParamError{Param: name, Msg: fmt.Sprintf("malformed param %s: write NAME=VALUE", quote(arg))}
	}
	prm := p.param(name)
	if prm == nil {
		return "", "", &ParamError{Param: name, Msg: fmt.Sprintf("unknown param %s: %s", quote(name), p.declaredParams())}
	}
	if strings.IndexByte(value, 0) >= 0 {
		// A NUL byte cannot reach a step through its environment.
		return "", "", &ParamError{Param: name, Msg: fmt.Sprintf("value of param %q contains a NUL byte", name)}
	}
	if prm.Pattern != nil && !prm.Pattern.MatchString(value) {
		return "", "", &ParamError{Param: name, Msg: fmt.Sprintf("value %s of param %q does not match its pattern %q",
			quote(value), name, prm.Pattern.String())}
	}
	return name, value, nil
}

func (p *Pipeline) param(name string) *Param {
	for i := range p.Params {
		if p.Params[i].Name == name {
			return &p.Params[i]
		}
	}
	return nil
}

// declaredParams lists the params a person may set, for messages about an unknown one.
func (p *Pipeline) declaredParams() string {
	if len(p.Params) == 0 {
		return "this pipeline declares no params"
	}
	names := make([]string, len(p.Params))
	for i, prm := range p.Params {
		names[i] = prm.Name
	}
	return "this pipeline declares " + nameList(names, ", ")
}
