package archive

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// sparseEntry returns a tarball with one GNU sparse file (PAX format 1.0, as GNU tar writes it) named name, of
// logical size size and one data byte at its end: a few blocks that Go's tar reader expands to size bytes.
func sparseEntry(name string, size int64) []byte {
	var pax []byte
	for _, kv := range [][2]string{{"GNU.sparse.major", "1"}, {"GNU.sparse.minor", "0"}, {"GNU.sparse.name", name}, {"GNU.sparse.realsize", fmt.Sprint(size)}} {
		rec := " " + kv[0] + "=" + kv[1] + "\n"
		n := len(rec) + 1
		for len(fmt.Sprint(n))+len(rec) != n {
			n++
		}
		pax = fmt.Appendf(pax, "%d%s", n, rec)
	}
	data := append(fmt.Appendf(nil, "1\n%d\n1\n", size-1), make([]byte, 512)...)[:512]
	data = append(data, 'x')
	var b bytes.Buffer
	b.Write(ustarHeader("PaxHeaders/x", 'x', int64(len(pax))))
	b.Write(padBlock(pax))
	b.Write(ustarHeader("GNUSparseFile.0/x", '0', int64(len(data))))
	b.Write(padBlock(data))
	b.Write(make([]byte, 1024))
	return b.Bytes()
}

func padBlock(b []byte) []byte { return append(b, make([]byte, (512-len(b)%512)%512)...) }

func ustarHeader(name string, typeflag byte, size int64) []byte {
	h := make([]byte, 512)
	copy(h, name)
	copy(h[100:], "0000644\x00")
	copy(h[108:], "0000000\x00")
	copy(h[116:], "0000000\x00")
	copy(h[124:], fmt.Sprintf("%011o\x00", size))
	copy(h[136:], "00000000000\x00")
	h[156] = typeflag
	copy(h[257:], "ustar\x00")
	copy(h[263:], "00")
	copy(h[148:], "        ")
	sum := 0
	for _, c := range h {
		sum += int(c)
	}
	copy(h[148:], fmt.Sprintf("%06o\x00 ", sum))
	return h
}

// TestExtractRefusesSparse: a sparse entry's holes are expanded by the tar reader and written as zeros, so two
// kilobytes of layer would fill 256 MiB (or a terabyte) of the host's disk. ssf's own tarballs never have one.
func TestExtractRefusesSparse(t *testing.T) {
	tarball := sparseEntry("bomb", 256<<20)
	dest := filepath.Join(t.TempDir(), "dest")
	err := Extract(context.Background(), bytes.NewReader(tarball), dest, ExtractOptions{})
	if err == nil || !strings.Contains(err.Error(), "sparse") {
		t.Errorf("err = %v, want a refused sparse entry", err)
	}
	if fi, err := os.Stat(filepath.Join(dest, "bomb")); err == nil {
		t.Errorf("the sparse entry was written: %d bytes", fi.Size())
	}
}
