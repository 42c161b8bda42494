// Package k8simage tests the sccgo image that `make image` builds
// (scripts/image.sh): its files and config against the Dockerfile's
// declarations, and each server binary run from it under runc the way the
// Kubernetes manifests run it (uid 65532, read-only root filesystem, no
// capabilities, no new privileges), and the docker-archive loaded into and
// run by containerd.
//
// The tests need the OCI layout: `make image-test` builds it and runs them
// with SCC_IMAGE_LAYOUT set (CI runs it). Without it they skip, so
// `go test ./...` needs no umoci and no root.
package k8simage
