package sbom

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/ssf-dev/ssf/internal/content"
	"github.com/ssf-dev/ssf/internal/provenance"
	"github.com/ssf-dev/ssf/internal/sign"
	"github.com/ssf-dev/ssf/internal/verify"
)

// craftedGoBinary writes a minimal ELF file whose one writable PT_LOAD segment holds a Go build info blob of the
// inline kind (Go 1.18+) with goVersion and the module info text modinfo (lines "path\t…", "mod\t…", "dep\t…",
// "build\t…"): the build info a hostile step can put in an output without any Go toolchain. debug/buildinfo reads
// it as it reads a real binary's.
func craftedGoBinary(t testing.TB, goVersion, modinfo string) string {
	t.Helper()
	var data bytes.Buffer
	data.WriteString("\xff Go buildinf:")
	data.WriteByte(8)   // pointer size
	data.WriteByte(0x2) // flags: strings inline, little endian
	data.Write(make([]byte, 32-data.Len()))
	str := func(s string) {
		data.Write(binary.AppendUvarint(nil, uint64(len(s))))
		data.WriteString(s)
	}
	str(goVersion)
	// The linker frames the module info with 16 bytes on either side and a newline before the trailing ones;
	// debug/buildinfo strips them.
	str("0123456789abcdef" + modinfo + "\n" + "0123456789abcdef")

	const phoff, dataOff, vaddr = 64, 128, 0x10000
	var f bytes.Buffer
	le := binary.LittleEndian
	f.Write([]byte{0x7f, 'E', 'L', 'F', 2, 1, 1, 0})
	f.Write(make([]byte, 8))
	w := func(v any) { binary.Write(&f, le, v) }
	w(uint16(2))          // ET_EXEC
	w(uint16(62))         // EM_X86_64
	w(uint32(1))          // version
	w(uint64(0))          // entry
	w(uint64(phoff))      // phoff
	w(uint64(0))          // shoff
	w(uint32(0))          // flags
	w(uint16(64))         // ehsize
	w(uint16(56))         // phentsize
	w(uint16(1))          // phnum
	w(uint16(64))         // shentsize
	w(uint16(0))          // shnum
	w(uint16(0))          // shstrndx
	w(uint32(1))          // PT_LOAD
	w(uint32(6))          // PF_R|PF_W
	w(uint64(dataOff))    // offset
	w(uint64(vaddr))      // vaddr
	w(uint64(vaddr))      // paddr
	w(uint64(data.Len())) // filesz
	w(uint64(data.Len())) // memsz
	w(uint64(0x1000))     // align
	f.Write(make([]byte, dataOff-f.Len()))
	f.Write(data.Bytes())

	p := filepath.Join(t.TempDir(), "crafted")
	if err := os.WriteFile(p, f.Bytes(), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// Build info is what the output says about itself. Text past maxInfoText (here 2 MiB of module paths, well
// under the read budget and the module count) is not turned into documents: each byte of it costs the control
// plane tens of bytes of memory as SBOMs and statements, and 18 MiB already took a GiB.
func TestHugeBuildInfoIsNotUsed(t *testing.T) {
	var mi strings.Builder
	mi.WriteString("path\texample.com/app\nmod\texample.com/app\t(devel)\t\n")
	long := strings.Repeat("a", 64<<10)
	for i := range 32 {
		fmt.Fprintf(&mi, "dep\texample.com/%s%d\tv1.0.0\th1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n", long, i)
	}
	small := craftedGoBinary(t, "go1.26.0", "path\texample.com/app\nmod\texample.com/app\t(devel)\t\ndep\texample.com/lib\tv1.0.0\th1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n")
	huge := craftedGoBinary(t, "go1.26.0", mi.String())
	for _, tc := range []struct {
		file     string
		goBinary bool
	}{{small, true}, {huge, false}} {
		b, err := os.ReadFile(tc.file)
		if err != nil {
			t.Fatal(err)
		}
		in := Input{Output: "app", Digest: digest.FromBytes(b), File: tc.file, Invocation: "i", Created: time.Unix(1, 0), Tool: "ssf test"}
		res, err := Generate(context.Background(), in)
		if err != nil {
			t.Fatal(err)
		}
		if res.GoBinary != tc.goBinary {
			t.Fatalf("%d bytes of build info: GoBinary %v, want %v", len(b), res.GoBinary, tc.goBinary)
		}
		if !tc.goBinary {
			if len(res.CycloneDX) > 64<<10 || !strings.Contains(string(res.CycloneDX), "more than 1048576") {
				t.Errorf("the CycloneDX SBOM (%d bytes) does not say why build info was not used", len(res.CycloneDX))
			}
		}
	}
}

// The largest build info Generate turns into documents (maxModules modules, maxInfoText bytes of text) still
// gives signed SBOM bundles that ssf sbom and a registry fetch can read back (verify.MaxBundleSize): a build
// must not sign an SBOM its own readers refuse.
func TestLargestSBOMFitsABundle(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for name, line := range map[string]func(int) string{
		// As many modules as allowed, each as short as build info allows: the most components.
		"short": func(i int) string { return fmt.Sprintf("dep	m/%d	v	\n", i) },
		// Fewer, long ones: the most text.
		"long": func(i int) string {
			return fmt.Sprintf("dep	example.com/%0150d	v1.0.0-20260101000000-abcdefabcdef	h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n", i)
		},
	} {
		t.Run(name, func(t *testing.T) {
			var mi strings.Builder
			mi.WriteString("path\texample.com/app\nmod\texample.com/app\t(devel)\t\n")
			for i := 0; i < maxModules && mi.Len()+len(line(i)) < maxInfoText; i++ {
				mi.WriteString(line(i))
			}
			exe := craftedGoBinary(t, "go1.26.0", mi.String())
			b, err := os.ReadFile(exe)
			if err != nil {
				t.Fatal(err)
			}
			d := digest.FromBytes(b)
			res, err := Generate(context.Background(), Input{Output: "app", Digest: d, File: exe, Invocation: "i", Created: time.Unix(1, 0), Tool: "ssf test"})
			if err != nil {
				t.Fatal(err)
			}
			if !res.GoBinary {
				t.Fatal("build info within the bounds was not used")
			}
			for _, f := range []struct {
				pt  string
				doc []byte
			}{{content.SPDXPredicateType, res.SPDX}, {content.CycloneDXPredicateType, res.CycloneDX}} {
				st, err := Statement([]provenance.Subject{{Name: "app", Digest: d}}, f.pt, f.doc)
				if err != nil {
					t.Fatal(err)
				}
				bundle, err := sign.NewSigner(key).Statement(context.Background(), st)
				if err != nil {
					t.Fatal(err)
				}
				if len(bundle) > verify.MaxBundleSize {
					t.Errorf("%s: the signed bundle of the largest accepted build info is %d bytes, more than the %d ssf sbom reads",
						f.pt, len(bundle), verify.MaxBundleSize)
				}
			}
		})
	}
}
