// Package statuspage serves the state server's status page: one
// self-contained HTML document (its style and script are embedded inline,
// no external assets) that polls the state server's /status JSON every
// second and shows the cluster at a glance: every member (role, id,
// address, health, draining, connections, subscriptions, messages in and
// out with rates), the committed ring (version and brokers) and any
// reshard in progress (version, phase, prepared/needed, age), plus the
// state server's own view (startup phase, highest version, last reshard).
// It matches state.Status (snake_case JSON).
//
// The page reads /status defensively: field names are matched without
// regard to case, underscores or dashes, unknown fields are ignored and
// missing ones are shown as "–", so it keeps working while the JSON grows.
//
// The state server mounts Handler at "/". The response carries a strict
// Content-Security-Policy that allows only the page's own inline script and
// style (by hash) and fetches to its own origin.
package statuspage
