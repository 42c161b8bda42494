// Package adminport serves a node's admin endpoints (/metrics, /healthz,
// /readyz, and the state server's /status and status page) on a port of
// their own, apart from the port clients or other nodes connect to.
//
// Clients need none of the admin endpoints and metrics tell an outsider
// how the cluster is built and loaded, so by default each binary serves
// them only on its admin port (SCC_ADMIN_PORT) and a deployment exposes
// that port only to its monitoring. SCC_ADMIN_ON_CLIENT_PORT puts them
// back on the main port as well.
package adminport
