// Package devcert makes throwaway certificates: a private CA and leaf
// certificates it signs, as PEM, written to a directory. scc-local uses it
// to run a local cluster with TLS on every link and on the client port,
// and tests use it to exercise TLS without files checked into the repo.
// The certificates are ECDSA P-256, valid for a day, and good for both
// server and client authentication; they are not meant for production.
package devcert
