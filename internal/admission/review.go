package admission

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// The AdmissionReview v1 fields the webhook reads and writes, written out here rather than imported from
// k8s.io/api: the handler needs a dozen fields, and the strictness below (a bounded body, a required uid and
// object, only the kinds it knows) is easier to see in a small type than in the full API machinery.
// https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/#request

// APIVersion and Kind name the only review the webhook reads and writes.
const (
	APIVersion = "admission.k8s.io/v1"
	ReviewKind = "AdmissionReview"
)

// MaxReviewBytes bounds a review's body. The API server stores objects of at most 1.5 MiB (etcd's default request
// limit); a review carries the object and, on UPDATE, the old one, both JSON.
const MaxReviewBytes = 8 << 20

// Review is an AdmissionReview v1: the API server sends Request, the webhook answers with Response.
type Review struct {
	APIVersion string    `json:"apiVersion"`
	Kind       string    `json:"kind"`
	Request    *Request  `json:"request,omitempty"`
	Response   *Response `json:"response,omitempty"`
}

// Request is the part of an AdmissionRequest the webhook uses.
type Request struct {
	UID       string           `json:"uid"`
	Kind      GroupVersionKind `json:"kind"`
	Name      string           `json:"name,omitempty"`
	Namespace string           `json:"namespace,omitempty"`
	Operation string           `json:"operation"`
	Object    json.RawMessage  `json:"object,omitempty"`
	OldObject json.RawMessage  `json:"oldObject,omitempty"` // the stored object, on UPDATE
}

// GroupVersionKind names the kind of the object under review.
type GroupVersionKind struct {
	Group   string `json:"group"`
	Version string `json:"version"`
	Kind    string `json:"kind"`
}

// Response is an AdmissionResponse.
type Response struct {
	UID       string   `json:"uid"`
	Allowed   bool     `json:"allowed"`
	Result    *Status  `json:"status,omitempty"`
	Patch     []byte   `json:"patch,omitempty"` // a JSONPatch; encoding/json writes it base64, as the API wants
	PatchType *string  `json:"patchType,omitempty"`
	Warnings  []string `json:"warnings,omitempty"`
}

// Status is the metav1.Status of a denial: its message is what kubectl prints.
type Status struct {
	Code    int    `json:"code,omitempty"`
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
}

// ErrBadReview is wrapped by every reason a review is refused before it is decided: the API server sent
// something that is not an AdmissionReview v1 request the webhook can decide.
var ErrBadReview = errors.New("not an AdmissionReview v1 request")

// DecodeReview reads one AdmissionReview v1 request from r: at most MaxReviewBytes, one JSON object, apiVersion
// admission.k8s.io/v1, kind AdmissionReview, a request with a uid and an operation, and an object for CREATE and
// UPDATE. Fields it does not use are ignored (newer API servers add some); what it uses must be what it says.
func DecodeReview(r io.Reader) (*Review, error) {
	body, err := io.ReadAll(io.LimitReader(r, MaxReviewBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading the admission review: %w", err)
	}
	if len(body) > MaxReviewBytes {
		return nil, fmt.Errorf("%w: the body is larger than %d bytes", ErrBadReview, MaxReviewBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	var rv Review
	if err := dec.Decode(&rv); err != nil {
		return nil, fmt.Errorf("%w: decoding JSON: %w", ErrBadReview, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: more than one JSON value in the body", ErrBadReview)
	}
	switch {
	case rv.APIVersion != APIVersion:
		return nil, fmt.Errorf("%w: apiVersion is %.100q, want %q (set admissionReviewVersions: [v1] in the webhook configuration)", ErrBadReview, rv.APIVersion, APIVersion)
	case rv.Kind != ReviewKind:
		return nil, fmt.Errorf("%w: kind is %.100q, want %q", ErrBadReview, rv.Kind, ReviewKind)
	case rv.Request == nil:
		return nil, fmt.Errorf("%w: it has no request", ErrBadReview)
	case rv.Request.UID == "":
		return nil, fmt.Errorf("%w: request.uid is empty", ErrBadReview)
	case len(rv.Request.UID) > 256:
		return nil, fmt.Errorf("%w: request.uid is longer than 256 bytes", ErrBadReview)
	}
	switch rv.Request.Operation {
	case "CREATE", "UPDATE":
		if o := bytes.TrimSpace(rv.Request.Object); len(o) == 0 || o[0] != '{' {
			return nil, fmt.Errorf("%w: request.object of a %s is not a JSON object", ErrBadReview, rv.Request.Operation)
		}
	case "DELETE", "CONNECT":
	default:
		return nil, fmt.Errorf("%w: request.operation is %.100q, want CREATE, UPDATE, DELETE or CONNECT", ErrBadReview, rv.Request.Operation)
	}
	return &rv, nil
}

// answer wraps resp in the review the API server expects back: the same apiVersion and kind, the request's uid.
func answer(req *Request, resp Response) Review {
	resp.UID = req.UID
	return Review{APIVersion: APIVersion, Kind: ReviewKind, Response: &resp}
}
