// Package demopage serves the frontend's demo chat page at /demo/: one
// self-contained HTML document whose small inline script speaks the
// SocketCluster client protocol directly (no third-party code). It opens a
// WebSocket to ws(s)://<page host>/socketcluster/ (or the ?url= given),
// sends #handshake, answers pings (an empty frame with an empty frame,
// "#1" with "#2"), subscribes to a room channel (?room=, default "demo"),
// publishes with #publish invokes and renders the #publish events it
// receives. On disconnect it
// reconnects with full-jitter exponential backoff and subscribes again; if
// no ping arrives within the server's pingTimeout it drops the socket and
// reconnects.
//
// Two tabs opened on different frontends (…/demo/?url=ws://127.0.0.1:8001/socketcluster/)
// talk to each other through the cluster.
//
// Stable element ids for scripted browsers: #status (text is one of
// "connecting", "handshaking", "subscribing", "connected", "disconnected";
// "connected" means subscribed and ready to chat), #frontend (the WebSocket
// URL in use), #room, #name, #messages (one li.msg per message, li.sys for
// notices), #input and #send.
package demopage
