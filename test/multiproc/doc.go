// Package multiproc tests the cluster as separate OS processes: the real
// scc-state, scc-broker and scc-frontend binaries from bin/, configured
// only through environment variables, on loopback. It is part of make
// test and takes seconds; the longer fault scenarios live in package
// chaos.
package multiproc
