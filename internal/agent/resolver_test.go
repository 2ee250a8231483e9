package agent

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestUpstreams: the node's resolvers come from its resolv.conf, on port
// 53, leaving out the address the agent's own resolver listens on (a
// host whose resolv.conf already names the bridge gateway would ask
// itself forever).
func TestUpstreams(t *testing.T) {
	dir := t.TempDir()
	write := func(body string) string {
		p := filepath.Join(dir, "resolv.conf")
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name, conf string
		want       []string
	}{
		{"two servers", "search example.org\nnameserver 10.0.0.2\nnameserver 10.0.0.3\n", []string{"10.0.0.2:53", "10.0.0.3:53"}},
		{"itself left out", "nameserver 172.17.0.1\nnameserver 127.0.0.53\n", []string{"127.0.0.53:53"}},
		{"IPv6", "nameserver ::1\n", []string{"[::1]:53"}},
		{"none", "search example.org\n", nil},
	} {
		if got := upstreams(write(tc.conf), "172.17.0.1"); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	if got := upstreams(filepath.Join(dir, "missing"), "172.17.0.1"); got != nil {
		t.Errorf("no resolv.conf: %v, want none", got)
	}
	if got := resolverSearch("shop"); got != "shop.lb.gantry" {
		t.Errorf("search domain %q", got)
	}
}
