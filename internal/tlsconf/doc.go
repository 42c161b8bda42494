// Package tlsconf builds the TLS configurations of sccgo's servers and
// link dialers from certificate files, and reloads the files without a
// restart.
//
// A Store holds the last good certificate, key and CA pool. Every TLS
// handshake asks it for the current ones; at most once per
// Config.ReloadInterval that question stats the files, and when one has
// changed (modification time, size or identity, so a file renamed over
// the old one, as Kubernetes does with mounted secrets, counts) the files
// are read again. A set that does not load (a half-written file, a key
// that does not match its certificate) is logged and the previous one
// stays in use, so a botched rotation never takes a node off the network.
// No goroutine is started: reloads happen on the handshakes that need
// them.
//
// Links between nodes use mutual authentication: ServerConfig verifies a
// client certificate against the CA whenever one is presented, and the
// link endpoint (internal/nodelink) refuses a link without one, so that
// plain HTTPS probes of /healthz and /readyz on the same port still work.
// ClientConfig presents this node's certificate and verifies the peer's
// against the same CA.
package tlsconf
