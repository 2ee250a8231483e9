package cli

import "testing"

// TestDefaultAdvertise: a server on a wildcard address advertises its
// embedded etcd's host with the API's port; any other address speaks for
// itself.
func TestDefaultAdvertise(t *testing.T) {
	for _, tc := range []struct{ http, etcd, want string }{
		{"127.0.0.1:7700", "http://127.0.0.1:7702", ""},
		{"10.0.0.5:7700", "http://10.0.0.5:7702", ""},
		{"0.0.0.0:7700", "http://s1.example:7702", "s1.example:7700"},
		{":7700", "http://10.0.0.5:7702", "10.0.0.5:7700"},
		{"[::]:7700", "http://[fd00::5]:7702", "[fd00::5]:7700"},
		{"0.0.0.0:7700", "http://127.0.0.1:7702", "127.0.0.1:7700"},
		{"0.0.0.0:7700", "http://0.0.0.0:7702", ""},
		{"0.0.0.0:7700", "::not a url", ""},
		{"no port", "http://s1:7702", ""},
	} {
		if got := defaultAdvertise(tc.http, tc.etcd); got != tc.want {
			t.Errorf("defaultAdvertise(%q, %q) = %q, want %q", tc.http, tc.etcd, got, tc.want)
		}
	}
}
