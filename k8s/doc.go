// Package k8s holds sccgo's Kubernetes manifests (kustomize: base/ and
// overlays/dev, overlays/prod) and, in its tests, their validation: both
// overlays are rendered with `kubectl kustomize`, every object is decoded
// strictly into its k8s.io/api type, and the invariants the cluster relies
// on are checked (probes, resources, security context, drain-covering grace
// periods, secret-sourced keys, Service selectors, and that every
// environment variable set is one the container's binary reads, taken from
// the binary's own -h table).
//
// The package has no non-test code.
package k8s
