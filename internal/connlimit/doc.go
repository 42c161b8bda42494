// Package connlimit counts every TCP connection a server accepts and keeps
// the count, and so the process's descriptors, under a cap.
//
// An HTTP server without it holds whatever connects: idle keep-alive
// connections and connections that never send a byte each pin a
// descriptor, and once the process runs out, accept fails for everyone,
// health checks included. The Listener here wraps a server's listener:
//
//   - every accepted connection counts until it is closed, whatever it
//     becomes (an HTTP exchange, a WebSocket, an inter-node link);
//   - at the cap, the connection idle the longest (accepted and silent, or
//     kept alive between requests) is closed to make room, since it is
//     the cheapest to lose;
//   - with none idle, up to Reserve more connections are accepted but only
//     answer the admin paths (/healthz, /readyz, /metrics), so probes and
//     scrapes still get through a full server; other requests on them get
//     HTTP 503;
//   - beyond that, a connection gets a bare HTTP 503 and is closed at once.
//
// Every eviction and refusal is counted with a reason. With Max 0 the cap
// is derived from the process's descriptor limit (RLIMIT_NOFILE) less a
// headroom for files, listeners, gossip and outbound links.
package connlimit
