package cluster

import (
	"testing"

	"github.com/sccgo/sccgo/internal/config"
)

// Gossip binds the instance IP when one is given, not every interface.
func TestReadNodeConfigGossipBind(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{}, "0.0.0.0"},
		{map[string]string{"SCC_INSTANCE_IP": "10.0.0.5"}, "10.0.0.5"},
		{map[string]string{"SCC_INSTANCE_IP": "10.0.0.5", "SCC_GOSSIP_BIND": "0.0.0.0"}, "0.0.0.0"},
		{map[string]string{"SCC_GOSSIP_BIND": "127.0.0.1"}, "127.0.0.1"},
	} {
		c := ReadNodeConfig(config.NewReader(func(k string) string { return tc.env[k] }))
		if c.GossipBind != tc.want {
			t.Errorf("%v: GossipBind %q, want %q", tc.env, c.GossipBind, tc.want)
		}
	}
}

// TestReadNodeConfigLinkFrame: the frontend reads the links' frame limit,
// which every node must share (a broker with a smaller one closes the
// links of frontends that send larger frames).
func TestReadNodeConfigLinkFrame(t *testing.T) {
	env := map[string]string{"SCC_LINK_MAX_FRAME_BYTES": "1048576"}
	c := ReadNodeConfig(config.NewReader(func(k string) string { return env[k] }))
	if c.Link.MaxFrameBytes != 1<<20 {
		t.Fatalf("Link.MaxFrameBytes %d, want %d", c.Link.MaxFrameBytes, 1<<20)
	}
}
