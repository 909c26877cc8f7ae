package pipeline

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseSecrets(t *testing.T) {
	p, err := Parse("ssf.yaml", []byte(valid+"      secrets: [NPM_TOKEN, deploy-key]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"NPM_TOKEN", "deploy-key"}; !reflect.DeepEqual(p.Tasks[0].Secrets, want) {
		t.Errorf("Secrets = %q, want %q", p.Tasks[0].Secrets, want)
	}
}

func TestParseSecretErrors(t *testing.T) {
	for _, tc := range []struct {
		name, file, field, msg string
	}{
		{"not a list", valid + "      secrets: NPM_TOKEN\n", "spec.tasks[0].secrets", "expected a list"},
		{"path", valid + "      secrets: [../key]\n", "spec.tasks[0].secrets[0]", "is not valid"},
		{"slash", valid + "      secrets: [a/b]\n", "spec.tasks[0].secrets[0]", "is not valid"},
		{"empty", valid + "      secrets: ['']\n", "spec.tasks[0].secrets[0]", "is not valid"},
		{"twice", valid + "      secrets: [A, A]\n", "spec.tasks[0].secrets[1]", "listed twice"},
		{"not a string", valid + "      secrets: [{name: A}]\n", "spec.tasks[0].secrets[0]", "string"},
		{"too many", valid + "      secrets: [" + strings.Repeat("A, ", 64) + "B]\n", "spec.tasks[0].secrets", "at most 64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("ssf.yaml", []byte(tc.file))
			var e *Error
			if !errors.As(err, &e) || e.Field != tc.field || !strings.Contains(e.Msg, tc.msg) || e.Line != 10 {
				t.Fatalf("err = %v, want %s at line 10: %q", err, tc.field, tc.msg)
			}
		})
	}
}
