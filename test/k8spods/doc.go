// Package k8spods holds the client checks of make k8s-pods
// (scripts/k8s-pods.sh), which runs the dev overlay's pods on a one-node
// cluster (kubelet, containerd, kube-proxy, CoreDNS) inside a network
// namespace of its own. The script builds this package's test binary on
// the host and runs it inside that namespace with the addresses of the
// cluster DNS, the frontend Service and the frontend pods in SCC_K8S_PODS_*
// variables. Without them every test skips, so `go test ./...` needs no
// cluster.
package k8spods
