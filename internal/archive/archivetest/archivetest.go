// Package archivetest makes tar streams that Go's archive/tar cannot write, for tests of code that must refuse
// them. It is for tests only and must never be imported by code that ships.
package archivetest

import (
	"bytes"
	"fmt"
)

// SparseEntry returns the blocks of one GNU sparse file (PAX format 1.0, as GNU tar writes it) named name, of
// logical size size, holding one data byte at its end: a few blocks that a tar reader expands to size bytes. The
// end-of-archive blocks are not included, so the entry can follow others.
func SparseEntry(name string, size int64) []byte {
	var pax []byte
	for _, kv := range [][2]string{{"GNU.sparse.major", "1"}, {"GNU.sparse.minor", "0"}, {"GNU.sparse.name", name}, {"GNU.sparse.realsize", fmt.Sprint(size)}} {
		rec := " " + kv[0] + "=" + kv[1] + "\n"
		n := len(rec) + 1
		for len(fmt.Sprint(n))+len(rec) != n {
			n++
		}
		pax = fmt.Appendf(pax, "%d%s", n, rec)
	}
	// The data starts with the sparse map (one region of one byte, at the end), padded to a block, then that byte.
	data := append(fmt.Appendf(nil, "1\n%d\n1\n", size-1), make([]byte, 512)...)[:512]
	data = append(data, 'x')
	var b bytes.Buffer
	b.Write(Header("PaxHeaders/x", 'x', int64(len(pax))))
	b.Write(Pad(pax))
	b.Write(Header("GNUSparseFile.0/x", '0', int64(len(data))))
	b.Write(Pad(data))
	return b.Bytes()
}

// End is the two zero blocks that end a tar stream.
func End() []byte { return make([]byte, 1024) }

// Pad pads b with zeros to a whole number of 512-byte blocks.
func Pad(b []byte) []byte { return append(b, make([]byte, (512-len(b)%512)%512)...) }

// Header is a ustar header block for an entry of the given name, type and size (mode 0644, owner 0, mtime 0).
func Header(name string, typeflag byte, size int64) []byte {
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
