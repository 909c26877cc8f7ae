package factory

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"go.yaml.in/yaml/v3"

	"github.com/ssf-dev/ssf/internal/builder"
	"github.com/ssf-dev/ssf/internal/durable"
	"github.com/ssf-dev/ssf/internal/home"
	"github.com/ssf-dev/ssf/internal/sign"
	"github.com/ssf-dev/ssf/internal/trust"
)

// Home is a factory's state directory ($SSF_HOME, default ~/.ssf).
type Home struct {
	Dir string
}

// Config is the factory's config.yaml.
type Config struct {
	// BuilderID is written into every provenance statement as runDetails.builder.id: the identity of this
	// factory, which verifiers pin with --builder-id.
	BuilderID string `yaml:"builderId"`
	// Runtime is the OCI runtime binary (a name in $PATH or a path).
	Runtime string `yaml:"runtime"`
	// MaxOutputBytes bounds the declared outputs of one task, by size; DefaultMaxOutputBytes when unset.
	MaxOutputBytes int64 `yaml:"maxOutputBytes,omitempty"`
	// MaxCacheBytes bounds one task cache (its tar stream); a larger one is dropped. DefaultMaxCacheBytes when unset.
	MaxCacheBytes int64 `yaml:"maxCacheBytes,omitempty"`
	// Resource limits (limits.go): the host uids steps run as ("FIRST-LAST"), one task's disk, tasks running at once
	// on the host, and one build's total memory and processes. Unset means the default.
	TaskUIDs            string `yaml:"taskUids,omitempty"`
	MaxDiskBytes        int64  `yaml:"maxDiskBytes,omitempty"`
	MaxParallelTasks    int    `yaml:"maxParallelTasks,omitempty"`
	MaxBuildMemoryBytes int64  `yaml:"maxBuildMemoryBytes,omitempty"`
	MaxBuildPids        int64  `yaml:"maxBuildPids,omitempty"`
	// GoProxy is where gomod dependencies are fetched from (a GOPROXY list; its first http or https entry is
	// used); unset means $GOPROXY of the ssf process, else https://proxy.golang.org.
	GoProxy string `yaml:"goproxy,omitempty"`
	// NpmRegistry is where npm packages whose package-lock.json entry has no "resolved" URL are fetched from;
	// unset means the registry npm is configured with ($npm_config_registry, ~/.npmrc, the global npmrc), else
	// https://registry.npmjs.org/.
	NpmRegistry string `yaml:"npmRegistry,omitempty"`
	// Credentials are the control plane's logins to dependency servers, each a factory secret sent only to its
	// host (credentials.go); tasks never see them.
	Credentials []CredentialConfig `yaml:"credentials,omitempty"`
	// TrustDomain is the factory's SPIFFE trust domain (spiffe://TD/...); Issuer is the OIDC issuer URL its workload
	// certificates carry (what `cosign --certificate-oidc-issuer` matches). Set by `ssf init`; defaults in trust.go.
	TrustDomain string `yaml:"trustDomain,omitempty"`
	Issuer      string `yaml:"issuer,omitempty"`
}

// DefaultMaxOutputBytes is the default bound on one task's outputs.
const DefaultMaxOutputBytes int64 = 4 << 30

// DefaultHome returns $SSF_HOME, or ~/.ssf.
func DefaultHome() (Home, error) {
	l, err := home.Default()
	return Home{Dir: l.Dir}, err
}

// Paths inside the home come from package home, the one place that knows its layout.
func (h Home) layout() home.Layout    { return home.Layout{Dir: h.Dir} }
func (h Home) configPath() string     { return h.layout().Config() }
func (h Home) KeyPath() string        { return h.layout().Key() }
func (h Home) imagesDir() string      { return h.layout().Images() }
func (h Home) rootfsCacheDir() string { return h.layout().RootfsCache() }
func (h Home) runcStateDir() string   { return h.layout().RuntimeState() }
func (h Home) depsCacheDir() string   { return h.layout().DepsCache() }

// RegistryDir is where the embedded registry keeps its blobs, repositories and users.
func (h Home) RegistryDir() string { return h.layout().Registry() }

// ErrNotInitialised is returned when the home has no config or key yet.
var ErrNotInitialised = errors.New("factory home is not initialised")

// InitResult says what Init created; an existing file is never replaced.
type InitResult struct {
	CreatedConfig, CreatedKey bool
	CreatedTrust              []string // the factory trust's files made now (trust.go)
}

// Init creates the home, its config and the provenance signing key when they are missing. It is idempotent and
// never overwrites an existing key or config.
func (h Home) Init(opts ...InitOption) (InitResult, error) {
	var res InitResult
	var o initOptions
	for _, opt := range opts {
		opt(&o)
	}
	if err := trust.CheckOptions(o.trustDomain, o.issuer); err != nil {
		return res, &InputError{Err: fmt.Errorf("ssf init: %w", err)}
	}
	if err := os.MkdirAll(h.Dir, 0o700); err != nil {
		return res, fmt.Errorf("creating factory home %q: %w", h.Dir, err)
	}
	for _, d := range []string{filepath.Dir(h.KeyPath()), h.imagesDir(), h.rootfsCacheDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return res, fmt.Errorf("creating %q: %w", d, err)
		}
	}
	if _, err := builder.Open(h.imagesDir()); err != nil {
		return res, err
	}
	if _, err := os.Stat(h.configPath()); errors.Is(err, fs.ErrNotExist) {
		host, _ := os.Hostname()
		if host == "" {
			host = "localhost"
		}
		cfg := Config{BuilderID: "https://ssf.dev/factory/" + host, Runtime: "runc", TrustDomain: o.trustDomain, Issuer: o.issuer}
		cfg.fillTrust()
		data, err := yaml.Marshal(cfg)
		if err != nil {
			return res, err
		}
		data = append([]byte("# ssf factory configuration: see `ssf init --help`.\n"), data...)
		if err := durable.WriteNew(h.configPath(), data, 0o600); err != nil {
			return res, err
		}
		res.CreatedConfig = true
	} else if err != nil {
		return res, err
	}
	switch err := sign.GenerateKey(h.KeyPath()); {
	case err == nil:
		res.CreatedKey = true
	case errors.Is(err, fs.ErrExist):
	default:
		return res, err
	}
	cfg, err := h.Config()
	if err != nil {
		return res, err
	}
	if err := checkInitTrust(cfg, h.configPath(), o); err != nil {
		return res, err
	}
	res.CreatedTrust, err = h.initTrust(cfg)
	return res, err
}

// Config reads config.yaml strictly: unknown fields are errors.
func (h Home) Config() (Config, error) {
	data, err := os.ReadFile(h.configPath())
	if errors.Is(err, fs.ErrNotExist) {
		return Config{}, fmt.Errorf("%w: %s has no config.yaml; run `ssf init` first", ErrNotInitialised, h.Dir)
	}
	if err != nil {
		return Config{}, fmt.Errorf("reading factory config: %w", err)
	}
	var cfg Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		return Config{}, fmt.Errorf("reading factory config %q: %w", h.configPath(), err)
	}
	if cfg.BuilderID == "" {
		return Config{}, fmt.Errorf("factory config %q: builderId is empty", h.configPath())
	}
	if cfg.Runtime == "" {
		cfg.Runtime = "runc"
	}
	cfg.fillTrust()
	if cfg.MaxOutputBytes < 0 {
		return Config{}, fmt.Errorf("factory config %q: maxOutputBytes is negative", h.configPath())
	}
	if cfg.MaxCacheBytes < 0 {
		return Config{}, &InputError{Err: fmt.Errorf("factory config %q: maxCacheBytes is negative: give a size in bytes, or leave it out for %d", h.configPath(), DefaultMaxCacheBytes)}
	}
	if cfg.MaxOutputBytes == 0 {
		cfg.MaxOutputBytes = DefaultMaxOutputBytes
	}
	if err := cfg.checkLimits(h.configPath(), systemIDFiles); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// Images opens the builder image store.
func (h Home) Images() (*builder.Store, error) {
	if _, err := os.Stat(h.configPath()); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s; run `ssf init` first", ErrNotInitialised, h.Dir)
	}
	return builder.Open(h.imagesDir())
}
