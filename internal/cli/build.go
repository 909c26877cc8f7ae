package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/ssf-dev/ssf/internal/content"
	"github.com/ssf-dev/ssf/internal/factory"
	"github.com/ssf-dev/ssf/internal/oci"
	"github.com/ssf-dev/ssf/internal/source"
)

func newBuildCmd() *cobra.Command {
	var req factory.BuildRequest
	var publishTo string
	var output *outputFormat
	var policyDir *string
	cmd := &cobra.Command{
		Use:   "build [-f ssf.yaml] [--source .] --out OUT [--param NAME=VALUE]... [--output json]",
		Short: "Run a pipeline hermetically and sign its provenance",
		Long: `Run the pipeline's tasks (-f, default ssf.yaml in the current directory) on the source (--source, default
the current directory) in dependency order, each in a fresh container (runc, or the runtime config.yaml
names) with no network, a read-only root, an unprivileged uid of the build's own, no capabilities, seccomp, and
memory, process, disk and time limits. A task sees:

  /workspace             a fresh writable copy of the source (the current directory; changes never flow back)
  /outputs               $SSF_OUTPUTS, empty: write the task's declared outputs here
  /inputs/TASK/          the outputs of each task it needs, read-only
  /tmp                   $HOME, empty and writable
  /deps                  $SSF_DEPS, read-only: the pipeline's spec.dependencies (below)
  SSF_PARAM_<NAME>       each param's value, as data (never substituted into the script)

Dependencies (spec.dependencies) are fetched by ssf itself before any task runs, never by a step, and each is
checked against its pin: gomod entries against go.sum (every module go.mod needs, from config.yaml's goproxy,
else $GOPROXY, else proxy.golang.org), npm entries against package-lock.json's integrity, file entries against
their sha256. A module missing from go.sum, a package without integrity or a hash that differs stops the build
and names it. They are kept in $SSF_HOME/cache/deps (hashed again on every use) and offered read-only at /deps,
with the environment set so that go build and npm ci work offline with no flags (npm install scripts stay off
unless the task says npmScripts: true). Every one is recorded in the provenance.

When every task has succeeded, ssf hashes the declared outputs itself, copies them to OUT/<path>, and writes
SLSA v1 provenance, signed by the run's identity (below), to OUT/attestations/provenance.sigstore.json (task
logs go to OUT/attestations/logs/), and for each output an SPDX 2.3 and a CycloneDX 1.6 SBOM, each signed the
same way as an in-toto attestation, to OUT/attestations/<output>.spdx.sigstore.json and <output>.cdx.sigstore.json (ssf sbom reads
them). OUT must not exist or be empty; it appears in one rename once everything in it is on disk. A failed
build exits 1, names the task, step and exit code, signs nothing and leaves OUT untouched.

Outputs (docs/build-type.md): PATH is a regular file; DIR/ is every regular file under DIR, each an output of
its own (a symlink, fifo, socket or device in it, more than 10000 entries, or no file at all fails the task;
a build may publish at most 1023 files, the most subjects verifiers accept);
{path: PATH, internal: true} goes only to the tasks that need this one (recorded with its digest among what they
read), never to OUT, an SBOM or a publish. A task may declare no outputs (a test task), but some task must
publish one.

Signing (--signer identity, the default; docs/keyless.md): each task, once it has ended, signs its own
attestation (https://ssf.dev/attestations/task/v1: its outputs and log as subjects; inputs, steps, exit codes,
times, builder and isolation as predicate) with a key made in memory and a 10-minute certificate for
spiffe://TD/pipeline/<pipeline>/task/<task> from the factory CA, written to OUT/attestations/<task>.task.sigstore.json;
the provenance and SBOMs are signed the same way by spiffe://TD/pipeline/<pipeline>, and the provenance lists
every task bundle's digest. TD and the issuer ISS are config.yaml's trustDomain and issuer (ssf init's
--trust-domain, default ssf.local, and --issuer, default https://TD/issuer). Every signature is appended to the
transparency log ($SSF_HOME/log) before its bundle is written and timestamped by the factory TSA. Verify with
ssf verify FILE --bundle OUT/attestations/provenance.sigstore.json --certificate-identity
spiffe://TD/pipeline/<pipeline> --certificate-oidc-issuer ISS, or with cosign and the trusted root of ssf trust
export. Builds of one factory home take turns on the log only while they sign, so they still run side by side (one
that waits for its turn says so); while ssf log serve --accept-entries holds it, the build stops before any task
runs (exit 2).

--signer key signs the provenance and SBOMs with the factory's long-lived provenance key instead (no task
attestations, no log entries, no timestamps); verify them with --key KEY.pub (ssf keys
public).

--keep-workspace: when a task fails, its workspace, outputs and tmp are copied, read-only and owned by root, to
$SSF_HOME/builds/<id>/workspaces/<task>/ before its disk is released, and the path is printed (and in --output
json's hint). Symlinks are kept as links and never followed; fifos, sockets and devices are left out; setuid,
setgid and write bits are dropped; at most 1 GiB, 100000 entries and 128 directory levels are kept. The build's
secret values are redacted from the kept files and link targets, and a name holding one is left out (a
convenience, as for logs: a step can disguise a value). ssf builds prune removes them with the build.

The source is snapshotted once (docs/source.md). In a git work tree (its top or a subfolder) it holds the files
git would commit: the HEAD commit's files as they are now, plus untracked files no .gitignore, .git/info/exclude
or .ssfignore pattern matches (never node_modules/ or bin/ if ignored); elsewhere the folder less its .ssfignore.
It is recorded by commit (and path, for a subfolder) only when its files equal the commit's byte for byte, else
by tree digest; one line before the tasks says so: "source: 142 files, 1.2 MB, commit 3f2da36 (clean)" or
"..., dirty: 2 modified, 1 untracked". Symlinks are kept as links, mount points are not crossed, fifos, sockets and
devices are left out (each is named, as are ignored paths), and a source that holds the factory home, OUT, or a hard link to a file of
the factory home (such as its signing key) is refused, as is one larger than maxDiskBytes (every task gets a whole
copy; sparse files count at their full size). The builder must be named as the factory imported it
(ssf builder list).

ssf build runs as root (it creates cgroups, loop-mounted task disks and containers); anyone else is told so
before anything is done. A step that fails after a failed name lookup or connection gets a hint: tasks have no
network, and what a build needs is declared in spec.dependencies.

--publish REGISTRY/REPO[:TAG] then pushes OUT as ssf publish does (see ssf publish --help); the last line printed
is the pushed REGISTRY/REPO@sha256:<hex>.

Policy (docs/policy.md): the Rego policy set of --policy DIR (default $SSF_HOME/policy; when that directory does
not exist, the default set built into ssf, which ssf init writes there) is compiled once, before any work; one
that does not compile exits 2 naming FILE:LINE. Its gates decide: ssf.build once the source is taken and before
anything is fetched or run (the pipeline's name, digest, path, fromSource, signers; params with defaults; source;
builder), ssf.deps for each dependency before it is fetched, and with --publish ssf.publish before any push.
A denial exits 1 naming the gate with every message; nothing is fetched, run, signed or pushed past it. The
provenance records the set's digest and source (internalParameters.policy).

Signed pipelines: when FILE.sig lies beside the pipeline file (ssf pipeline sign FILE --key KEY.pem writes it),
it must be a valid signature over the file's bytes, or the build fails (exit 1); the signing key's fingerprint,
sha256:<hex of its PKIX DER public key> (ssf pipeline fingerprint KEY), is then in ssf.build's
input.pipeline.signers, for a policy to require.

With --output json, stdout holds one JSON object and nothing else (its publish field the push's); logs and
progress stay on stderr. The fields are in docs/cli-json.md.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch {
			case req.Pipeline == "":
				return usagef("-f is empty: name the pipeline file (default ssf.yaml)")
			case req.Source == "":
				return usagef("--source is empty: name the source directory (default the current directory)")
			case req.Out == "":
				return usagef("--out is required: a new directory for the outputs and attestations")
			}
			// Before any work: without root, the build would fail deep inside (a chown of the task's directories).
			if err := needRoot(); err != nil {
				return err
			}
			if !cmd.Flags().Changed("file") {
				if err := defaultPipelineExists(req.Pipeline); err != nil {
					return err
				}
			}
			if req.Signer != factory.SignerKey && req.Signer != factory.SignerIdentity {
				return usagef("--signer %q: want %s (a certificate per task and run, the default) or %s (the factory's provenance key)", req.Signer, factory.SignerIdentity, factory.SignerKey)
			}
			if publishTo != "" {
				if _, _, err := oci.ParseTarget(publishTo); err != nil {
					return &usageError{fmt.Errorf("--publish: %w", err)} // before the build, not after it
				}
			}
			pol, err := loadPolicy(cmd.Context(), *policyDir) // once, before any work (policyflag.go)
			if err != nil {
				return err
			}
			req.Policy = pol
			h, err := home()
			if err != nil {
				return err
			}
			req.Log = cmd.ErrOrStderr()
			if f, ok := req.Log.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
				req.Progress = f // download progress, one line rewritten in place
			}
			res, err := h.Build(cmd.Context(), req)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if *output == outputText {
				fmt.Fprintf(w, "build %s succeeded in %.1fs\n", res.InvocationID, res.Duration.Seconds())
				fmt.Fprintf(w, "source      %s\n", res.Source.URI)
				fmt.Fprintf(w, "builder     %s\n", res.Builder)
				for _, o := range res.Outputs {
					fmt.Fprintf(w, "output      %s  %s\n", filepath.Join(res.Out, o.Path), o.Digest)
				}
				fmt.Fprintf(w, "provenance  %s\n", res.Bundle)
				for _, ta := range res.TaskAttestations {
					fmt.Fprintf(w, "task        %s  signed by %s\n", ta.Bundle, ta.Identity)
				}
				fmt.Fprintf(w, "sboms       %s/attestations/<output>.spdx.sigstore.json and .cdx.sigstore.json (ssf sbom OUT/<output>)\n", res.Out)
				fmt.Fprintf(w, "verify      %s\n", verifyCommand(res)) // build_verify.go
			}
			j := buildResultJSON(res)
			if publishTo != "" {
				pub, err := publish(cmd.Context(), res.Out, publishTo, nil, registryFlags{timeout: oci.DefaultTimeout, deadline: publishDeadline}, req.Policy)
				if err != nil {
					return fmt.Errorf("the build succeeded (outputs in %s) but publishing failed; retry with `ssf publish %s --to %s`: %w",
						res.Out, res.Out, publishTo, err)
				}
				if *output == outputText {
					printPublished(w, pub)
				}
				pj := publishedJSON(pub)
				j.Publish = &pj
			}
			if *output == outputJSON {
				return writeJSON(w, j)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&req.Pipeline, "file", "f", "ssf.yaml", "pipeline file")
	f.StringVar(&req.Source, "source", ".", "source directory: in a git work tree, the files git would commit (recorded by commit when they equal HEAD); else the folder less its .ssfignore")
	f.StringVar(&req.Out, "out", "", "output directory; must not exist or be empty")
	f.StringArrayVar(&req.Params, "param", nil, "pipeline parameter NAME=VALUE (repeatable)")
	f.StringVar(&publishTo, "publish", "", "after the build, push OUT to this registry repository, REGISTRY/REPO[:TAG]")
	f.BoolVar(&req.KeepWorkspace, "keep-workspace", false, "when a task fails, keep its workspace, outputs and tmp, read-only, in $SSF_HOME/builds/<id>/workspaces/<task>/ (the path is printed; ssf builds prune removes it)")
	f.StringVar(&req.Signer, "signer", factory.SignerIdentity, "what signs: identity (a short-lived certificate per task and per run, each signature in the transparency log and timestamped; docs/keyless.md) or key (the factory's long-lived provenance key)")
	policyDir = addPolicyFlag(cmd)
	f.BoolVar(&req.NoCache, "no-cache", false, "give every task empty caches and keep none (recorded in the provenance as disabled); use it for release builds (docs/caches.md)")
	output = addOutputFlag(cmd)
	return cmd
}

// buildJSON is ssf build --output json (docs/cli-json.md).
type buildJSON struct {
	InvocationID    string            `json:"invocationId"`
	DurationSeconds float64           `json:"durationSeconds"`
	Source          sourceJSON        `json:"source"`
	Builder         string            `json:"builder"`
	Out             string            `json:"out"`
	Outputs         []buildOutputJSON `json:"outputs"`
	Provenance      string            `json:"provenance"`
	SBOMs           []sbomJSON        `json:"sboms"`
	Publish         *publishJSON      `json:"publish,omitempty"` // with --publish only

	// TaskAttestations: with --signer identity, each task's bundle and the identity that signed it.
	TaskAttestations []taskAttestationJSON `json:"taskAttestations,omitempty"`
	// SignedBy and Issuer: with --signer identity, who signed the provenance and SBOMs and the factory's issuer,
	// for --certificate-identity and --certificate-oidc-issuer.
	SignedBy string `json:"signedBy,omitempty"`
	Issuer   string `json:"issuer,omitempty"`
}

type sourceJSON struct {
	URI          string            `json:"uri"`
	Digest       map[string]string `json:"digest"`
	source.Stats                   // files, bytes, ignored, ssfignorePatterns, git: as docs/cli-json.md describes
}

type buildOutputJSON struct {
	Path   string `json:"path"` // as the pipeline declares it, relative to out
	File   string `json:"file"` // out joined with path
	Digest string `json:"digest"`
	Size   int64  `json:"size"`
}

type taskAttestationJSON struct {
	Task     string `json:"task"`
	Bundle   string `json:"bundle"`
	Identity string `json:"identity"`
}

type sbomJSON struct {
	Output    string `json:"output"`
	SPDX      string `json:"spdx"`
	CycloneDX string `json:"cyclonedx"`
}

func buildResultJSON(res *factory.BuildResult) buildJSON {
	j := buildJSON{InvocationID: res.InvocationID, DurationSeconds: res.Duration.Seconds(), Builder: res.Builder,
		Source: sourceJSON{URI: res.Source.URI, Digest: map[string]string{}, Stats: res.SourceStats}, Out: res.Out, Provenance: res.Bundle,
		Outputs: []buildOutputJSON{}, SBOMs: []sbomJSON{}, SignedBy: res.SignedBy, Issuer: res.Issuer}
	for alg, v := range res.Source.Digest {
		j.Source.Digest[alg] = v
	}
	for _, o := range res.Outputs {
		j.Outputs = append(j.Outputs, buildOutputJSON{Path: o.Path, File: filepath.Join(res.Out, filepath.FromSlash(o.Path)),
			Digest: string(o.Digest), Size: o.Size})
		att := filepath.Join(res.Out, "attestations", filepath.FromSlash(o.Path))
		j.SBOMs = append(j.SBOMs, sbomJSON{Output: o.Path, SPDX: att + content.SPDXBundleSuffix, CycloneDX: att + content.CycloneDXBundleSuffix})
	}
	for _, ta := range res.TaskAttestations {
		j.TaskAttestations = append(j.TaskAttestations, taskAttestationJSON{Task: ta.Task, Bundle: ta.Bundle, Identity: ta.Identity})
	}
	return j
}

// defaultPipelineExists says what was looked for when -f was not given and the current directory has no ssf.yaml.
func defaultPipelineExists(name string) error {
	if _, err := os.Lstat(name); !errors.Is(err, fs.ErrNotExist) {
		return nil // found, or unreadable: loading the pipeline says which
	}
	wd, err := os.Getwd()
	if err != nil {
		wd = "the current directory"
	}
	return usagef("no pipeline file: looked for %s in %s; write one there, or name it with -f FILE", name, wd)
}

// needRoot refuses a build by a user other than root before any work is done. The runc sandbox creates cgroups,
// loop-mounted task disks, containers and directories owned by each build's own uid, which only root may do.
func needRoot() error {
	if os.Geteuid() == 0 {
		return nil
	}
	return &hintError{
		err: usagef("ssf build needs root: the sandbox creates cgroups, loop-mounted task disks and containers, "+
			"and gives each build's directories to a uid of its own, all of which only root may do (running as uid %d)", os.Geteuid()),
		// sudo resets HOME, and with it the default factory home: say so, or the next error is "not initialised".
		hint: `run it with sudo, keeping your PATH: sudo env PATH="$PATH" ssf build ...; the factory home is then ` +
			`root's ($SSF_HOME, default ~root/.ssf), so run ssf init and ssf builder import with sudo too`,
	}
}
