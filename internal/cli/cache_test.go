package cli

import (
	"testing"

	"github.com/ssf-dev/ssf/internal/factory"
)

// A selector of 8 or more hex digits is a key prefix; a pipeline named like one is chosen with a trailing slash.
func TestCacheSelector(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want factory.CacheSelector
		bad  bool
	}{
		{in: "deadbeef", want: factory.CacheSelector{KeyPrefix: "deadbeef"}},
		{in: "deadbeef/", want: factory.CacheSelector{Pipeline: "deadbeef"}},
		{in: "hello", want: factory.CacheSelector{Pipeline: "hello"}},
		{in: "hello/build/go", want: factory.CacheSelector{Pipeline: "hello", Task: "build", Cache: "go"}},
		{in: "/", bad: true},
		{in: "hello/build/", bad: true},
		{in: "a//b", bad: true},
	} {
		got, err := cacheSelector(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("cacheSelector(%q) = %+v, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("cacheSelector(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}
