package clustertest_test

import (
	"crypto/tls"
	"testing"
	"time"

	"github.com/sccgo/sccgo/internal/clustertest"
)

// Every link on mutual TLS and clients on wss://: publishes cross from
// one frontend to the other through the brokers, none lost.
func TestTLSClusterPubSubAcrossFrontends(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{Brokers: 2, Frontends: 2, TLS: true, ClientTLS: true})
	c.WaitRing(10*time.Second, 2, 0)
	opts := steady(c)
	opts.Channels = 20 // few subscribes: the test is about TLS, not volume
	opts.TLSConfig = c.ClientTLSConfig()
	start := time.Now()
	tr := clustertest.StartTraffic(t, opts)
	if _, ok := tr.WaitFlowing(start, 10*time.Second); !ok {
		t.Fatal("traffic did not flow on every channel")
	}
	requireClean(t, tr.Stop(500*time.Millisecond))
}

// A broker that reaches the state server without a client certificate
// gets no link: it is refused (counted) and never joins the ring.
func TestTLSClusterRefusesNodeWithoutCertificate(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{Brokers: 1, Frontends: 1, TLS: true})
	v := c.WaitRing(10*time.Second, 1, 0)
	st := c.NodeTLS("intruder")
	noCert := func() *tls.Config {
		cfg := st.ClientConfig()
		cfg.GetClientCertificate = nil
		return cfg
	}
	b := c.AddBrokerWithTLS(st.ServerConfig(), noCert)
	clustertest.WaitFor(t, 10*time.Second, "the state server refusing the broker twice", func() bool {
		return c.StateRejects("no_cert") >= 2
	})
	if b.Ready() {
		t.Fatal("a broker without a client certificate was welcomed")
	}
	if got := c.State.Status(); len(got.Ring.Brokers) != 1 || got.Ring.Version != v {
		t.Fatalf("ring changed: %+v", got.Ring)
	}

	// A certificate from another CA fails the TLS handshake itself.
	foreign := c.ForeignTLS("foreign")
	f := c.AddBrokerWithTLS(foreign.ServerConfig(), foreign.ClientConfig)
	clustertest.WaitFor(t, 10*time.Second, "the state server failing the foreign broker's handshake twice", func() bool {
		return c.StateTLSFailures("bad_cert") >= 2
	})
	if f.Ready() || b.Ready() {
		t.Fatal("a broker without the cluster's certificate was welcomed")
	}
	if got := c.State.Status(); len(got.Ring.Brokers) != 1 || got.Ring.Version != v {
		t.Fatalf("ring changed: %+v", got.Ring)
	}
}
