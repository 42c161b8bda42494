// Package hooks is the frontend's client to the application backend: four
// hooks (connect, subscribe, publish and rpc), each an HTTP POST of a JSON
// object to a URL of its own, answered with a JSON object that allows,
// denies or, for publish, replaces the data. docs/hooks.md describes the
// request and response shapes.
//
// A hook call is a decision the frontend waits for on a client's request,
// never on the delivery path of a publication. Every call is bounded: a
// timeout (retries included), a concurrency bound per hook beyond which a
// call fails at once as overloaded, and a bound on the response's size. A
// call that fails (backend down, timeout, overloaded, an answer that is not
// the documented JSON) is refused (fail-closed, the default) or allowed
// (fail-open) as the hook's configuration says. Connect and subscribe are
// read-only decisions and are retried after a connection error or a 5xx;
// publish and rpc may have side effects in the backend and never are.
//
// Every call is counted by hook and outcome, and timed, on an injected
// Prometheus registry.
//
// A Client holds one HTTP transport per hook (keep-alive connections, at
// most Concurrency of them per backend host). It starts no goroutine of its
// own; net/http's connection goroutines end with Close.
package hooks
