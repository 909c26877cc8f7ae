package admission_test

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"
)

// benchUsers is how many reviews are in flight at once: the load Kyverno publishes its figures at (10 users).
const benchUsers = 10

// BenchmarkAdmissionLatency sends b.N /validate reviews of a Pod over HTTPS on loopback from benchUsers (and, to
// tell service time from queueing, 1) concurrent clients and reports the latency percentiles. warm: every review names one image whose evidence is
// cached (after a first review); cold: each review names another image, pushed and signed beforehand, so each
// one verifies from the embedded registry (the referrers listing, the bundle's manifest and blob, and the
// signature). Run with -benchtime Nx: cold pushes N images before the timer starts.
func BenchmarkAdmissionLatency(b *testing.B) {
	for _, tc := range []struct {
		cold  bool
		users int
	}{{false, benchUsers}, {true, benchUsers}, {false, 1}, {true, 1}} {
		cold, users := tc.cold, tc.users
		b.Run(fmt.Sprintf("%s/users=%d", map[bool]string{false: "warm", true: "cold"}[cold], users), func(b *testing.B) {
			reg := newTestRegistry(b)
			fac := newFactory(b)
			images := make([]string, 1)
			if cold {
				images = make([]string, b.N)
			}
			for i := range images {
				images[i] = pushImage(b, reg.host, fmt.Sprintf("bench/app%d", i), "v1")
				fac.sign(b, images[i], nil)
			}
			h := newHandler(b, fac.trust(b), nil)
			srv := httptest.NewTLSServer(h)
			defer srv.Close()
			client := srv.Client()
			client.Transport.(*http.Transport).MaxIdleConnsPerHost = benchUsers
			client.Transport.(*http.Transport).TLSClientConfig.ClientSessionCache = tls.NewLRUClientSessionCache(benchUsers)
			reviews := make([][]byte, len(images))
			for i, img := range images {
				reviews[i] = reviewJSON(b, "CREATE", objectOf("Pod", fmt.Sprintf("web-%d", i), podSpec([]string{"app=" + img}, nil, nil)))
			}
			send := func(body []byte) (time.Duration, error) {
				start := time.Now()
				resp, err := client.Post(srv.URL+"/validate/enforce", "application/json", bytes.NewReader(body))
				if err != nil {
					return 0, err
				}
				out, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				took := time.Since(start)
				if err != nil || resp.StatusCode != http.StatusOK || !bytes.Contains(out, []byte(`"allowed":true`)) {
					return 0, fmt.Errorf("review not admitted: %s %v %s", resp.Status, err, out)
				}
				return took, nil
			}
			if !cold {
				if _, err := send(reviews[0]); err != nil { // the first review fills the cache
					b.Fatal(err)
				}
			}
			reg.requests()
			lat := make([]time.Duration, b.N)
			var next sync.Mutex
			n := 0
			var failed error
			var wg sync.WaitGroup
			b.ResetTimer()
			for range users {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						next.Lock()
						i := n
						n++
						next.Unlock()
						if i >= b.N {
							return
						}
						took, err := send(reviews[i%len(reviews)])
						if err != nil {
							next.Lock()
							failed = err
							next.Unlock()
							return
						}
						lat[i] = took
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			if failed != nil {
				b.Fatal(failed)
			}
			slices.Sort(lat)
			pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
			b.ReportMetric(pct(0.50), "p50-ms")
			b.ReportMetric(pct(0.99), "p99-ms")
			b.ReportMetric(float64(len(reg.requests()))/float64(b.N), "registry-req/review")
		})
	}
}

// BenchmarkDeployPolicy is the cost of what is not cached: one ssf.deploy evaluation (the default set) over a
// verified image's statements, per container.
func BenchmarkDeployPolicy(b *testing.B) {
	reg := newTestRegistry(b)
	fac := newFactory(b)
	img := pushImage(b, reg.host, "bench/app", "v1")
	fac.sign(b, img, nil)
	h := newHandler(b, fac.trust(b), nil)
	body := reviewJSON(b, "CREATE", objectOf("Pod", "web", podSpec([]string{"app=" + img}, nil, nil)))
	post(b, h, "/validate", body) // fill the cache
	b.ResetTimer()
	for range b.N {
		if rv, _, out := post(b, h, "/validate", body); rv == nil || !rv.Response.Allowed {
			b.Fatal(out)
		}
	}
}
