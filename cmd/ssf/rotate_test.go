package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestIdentityBuildAcrossRotation: an identity build before `ssf trust rotate` and one after both verify — ssf
// verify with the local trust and with the exported root, stock cosign with the exported root — and the build
// after the rotation appends to a new log while the old one sits archived, auditable with its retired key.
func TestIdentityBuildAcrossRotation(t *testing.T) {
	p := identityProject(t)
	home := limitedHome(t, "")
	// A log of its own (the shared home's log may be mid-append by another test while it was copied).
	os.RemoveAll(filepath.Join(home, "log"))
	env := []string{"SSF_HOME=" + home}
	build := func(out string) {
		t.Helper()
		p.out = out
		p.write()
		r := ssfEnv(t, p.tmp, env, "build", "-f", p.pipeline, "--source", p.src, "--out", out, "--signer", "identity")
		if r.code != 0 {
			t.Fatalf("build failed (exit %d):\n%s%s", r.code, r.stdout, r.stderr)
		}
	}
	before, after := filepath.Join(p.dir, "before"), filepath.Join(p.dir, "after")
	build(before)
	r := ssfEnv(t, p.tmp, env, "trust", "rotate")
	if r.code != 0 || !strings.Contains(r.stdout, "archived the transparency log to "+home+"/log-") {
		t.Fatalf("trust rotate: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	build(after)
	archives, _ := filepath.Glob(filepath.Join(home, "log-*"))
	retired, _ := filepath.Glob(filepath.Join(home, "keys", "retired", "*", "tlog.pub"))
	if len(archives) != 1 || len(retired) != 1 {
		t.Fatalf("archived logs %v, retired log keys %v", archives, retired)
	}
	tr := filepath.Join(p.dir, "trusted_root.json")
	if r := ssfEnv(t, p.tmp, env, "trust", "export", "--out", tr); r.code != 0 {
		t.Fatalf("trust export: exit %d\n%s", r.code, r.stderr)
	}
	run := identityTD + "/pipeline/test"
	cosign := interopTool(t, "SSF_COSIGN", "cosign")
	for _, out := range []string{before, after} {
		app, prov := filepath.Join(out, "app"), filepath.Join(out, "attestations", "provenance.sigstore.json")
		task := filepath.Join(out, "attestations", "compile.task.sigstore.json")
		for _, trArgs := range [][]string{nil, {"--trusted-root", tr}} {
			for _, c := range [][2]string{{prov, run}, {task, run + "/task/compile"}} {
				args := append([]string{"verify", app, "--bundle", c[0], "--certificate-identity", c[1], "--certificate-oidc-issuer", identityIssuer}, trArgs...)
				if r := ssfEnv(t, p.tmp, env, args...); r.code != 0 {
					t.Errorf("ssf %s: exit %d\n%s%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
				}
			}
		}
		args := []string{"verify-blob-attestation", "--bundle", prov, "--trusted-root", tr,
			"--certificate-identity", run, "--certificate-oidc-issuer", identityIssuer, "--type", "slsaprovenance1", app}
		if out, err := exec.Command(cosign, args...).CombinedOutput(); err != nil {
			t.Errorf("cosign %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	// The new log holds only the build after the rotation; the archive audits with the retired key.
	for _, c := range []struct{ dir, key string }{{archives[0], retired[0]}, {filepath.Join(home, "log"), ""}} {
		srv := httptest.NewServer(http.FileServer(http.Dir(c.dir))) // a plain static mirror
		defer srv.Close()
		args := []string{"log", "verify", "--log", srv.URL, "--state", filepath.Join(t.TempDir(), "state.json")}
		if c.key != "" {
			args = append(args, "--key", c.key)
		}
		if r := ssfEnv(t, p.tmp, env, args...); r.code != 0 {
			t.Errorf("ssf %s: exit %d\n%s%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
		}
	}
}
