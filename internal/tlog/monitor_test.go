package tlog

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/transparency-dev/tessera/client"
)

// alteredFetcher serves a log's files with one of them changed, as a hostile or broken mirror would.
type alteredFetcher struct {
	Fetcher
	checkpoint func([]byte) []byte
	bundle     func([]byte) []byte
}

func (a alteredFetcher) ReadCheckpoint(ctx context.Context) ([]byte, error) {
	b, err := a.Fetcher.ReadCheckpoint(ctx)
	if err == nil && a.checkpoint != nil {
		b = a.checkpoint(bytes.Clone(b))
	}
	return b, err
}

func (a alteredFetcher) ReadEntryBundle(ctx context.Context, i uint64, p uint8) ([]byte, error) {
	b, err := a.Fetcher.ReadEntryBundle(ctx, i, p)
	if err == nil && a.bundle != nil {
		b = a.bundle(bytes.Clone(b))
	}
	return b, err
}

func appendN(t *testing.T, l *Log, from, n int) {
	t.Helper()
	k := newKey(t)
	for i := range n {
		if _, err := l.Append(context.Background(), testEntry(t, k, from+i)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestMonitor(t *testing.T) {
	ctx := context.Background()
	dir, logKey := t.TempDir(), newKey(t)
	l := openLog(t, dir, logKey)
	v, err := NewVerifier(logKey.Public(), "")
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 0, 300)
	if err := l.Close(ctx); err != nil { // publishes a checkpoint covering everything
		t.Fatal(err)
	}
	files := client.FileFetcher{Root: dir}
	first, err := v.Monitor(ctx, files, nil)
	if err != nil {
		t.Fatal(err)
	}
	if first.Size != 300 {
		t.Fatalf("monitored %d entries, want 300", first.Size)
	}
	oldCheckpoint, err := files.ReadCheckpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}

	l = openLog(t, dir, logKey)
	appendN(t, l, 300, 30)
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// Over HTTP from a plain static file server of the directory, as `ssf log verify --log URL` will read it.
	srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	defer srv.Close()
	u, _ := url.Parse(srv.URL + "/")
	web, err := client.NewHTTPFetcher(u, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	second, err := v.Monitor(ctx, web, first)
	if err != nil {
		t.Fatalf("monitoring the grown log over HTTP: %v", err)
	}
	if second.Size != 330 {
		t.Fatalf("monitored %d entries, want 330", second.Size)
	}

	// A log with the same key but other entries: a fork of what was verified.
	forkDir := t.TempDir()
	fork := openLog(t, forkDir, logKey)
	appendN(t, fork, 1000, 340)
	if err := fork.Close(ctx); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		f    Fetcher
		prev *MonitorState
		want error
	}{
		{"rollback to an older checkpoint", alteredFetcher{Fetcher: files, checkpoint: func([]byte) []byte { return oldCheckpoint }}, second, ErrRollback},
		{"changed digest in an entry", alteredFetcher{Fetcher: files, bundle: flipHexDigit}, first, ErrFork},
		{"unparseable entry", alteredFetcher{Fetcher: files, bundle: func(b []byte) []byte {
			if i := bytes.LastIndex(b, []byte(`"kind":"dsse"`)); i >= 0 {
				copy(b[i:], `"kind":"dsxe"`)
			}
			return b
		}}, first, ErrBadEntry},
		{"bad checkpoint signature", alteredFetcher{Fetcher: files, checkpoint: func(b []byte) []byte {
			b[len(b)-3] ^= 1
			return b
		}}, first, ErrBadCheckpoint},
		{"fork", client.FileFetcher{Root: forkDir}, second, ErrFork},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := v.Monitor(ctx, tt.f, tt.prev)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("an unchanged log: %v", err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			t.Logf("refused: %v", err)
		})
	}
}

// flipHexDigit changes one hex digit of the last entry's payload hash in a bundle: the entry still parses, but is
// not the entry that was logged.
func flipHexDigit(b []byte) []byte {
	marker := []byte(`"payloadHash":{"algorithm":"sha256","value":"`)
	i := bytes.LastIndex(b, marker)
	if i < 0 {
		return b
	}
	j := i + len(marker)
	if b[j] == 'a' {
		b[j] = 'b'
	} else {
		b[j] = 'a'
	}
	return b
}
