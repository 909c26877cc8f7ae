package registry

import (
	"bytes"
	"io"
	"net/http"
	"testing"
)

// A finished upload becomes its blob by a hard link to the session's data file. If the process stops after the
// link and before the session is removed, a client retrying the session must not append to the stored blob: the
// session is gone, and the blob keeps the bytes that hash to its digest.
func TestCommittedUploadCannotChangeItsBlob(t *testing.T) {
	tr := newTestRegistry(t)
	blob := []byte("the committed bytes")
	resp := tr.do("POST", "/v2/r/blobs/uploads/", nil)
	expect(t, resp, http.StatusAccepted, "")
	loc, id := resp.Header.Get("Location"), resp.Header.Get("Docker-Upload-UUID")
	expect(t, tr.do("PATCH", loc, bytes.NewReader(blob)), http.StatusAccepted, "")
	d, err := parseDigest(sha(blob))
	if err != nil {
		t.Fatal(err)
	}
	// What a crash between commitUpload's link and the session's removal leaves behind.
	if err := tr.reg.store.commitUpload(t.Context(), "r", id, d); err != nil {
		t.Fatal(err)
	}

	resp = tr.do("PATCH", loc, bytes.NewReader([]byte(" and more")))
	expect(t, resp, http.StatusNotFound, codeBlobUploadUnknown)
	resp = tr.do("GET", "/v2/r/blobs/"+d.String(), nil)
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Equal(got, blob) {
		t.Fatalf("blob %s after a retry on its committed session: status %d, %q, want %q", d, resp.StatusCode, got, blob)
	}
}
