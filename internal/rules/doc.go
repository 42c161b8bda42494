// Package rules decides who may subscribe to and publish on a channel, from
// the channel rules file (SCC_CHANNELS_FILE) that every frontend and broker
// reads. It is pure logic: apart from reading the file in Load it does no
// I/O and starts no goroutines, and a *Set is immutable, so one Set is
// shared by every socket without locks.
//
// A file holds an ordered list of rules and a default rule. A channel is
// governed by the first rule whose pattern matches its name, else by the
// default. Each rule names who may subscribe and who may publish from a
// client (see Permission), and carries the channel's options (history,
// recovery, presence, join/leave events, publish rate) for the features
// that read them.
//
// # Patterns
//
// A pattern is matched against the whole channel name, byte for byte:
//
//   - `*` matches any run of characters, including none and including `:`;
//   - `?` matches exactly one character (one UTF-8 code point);
//   - `{claim}` is a placeholder bound to the socket's auth token: when a
//     rule is chosen it stands for one or more characters, and the rule
//     then grants nothing unless that text equals the claim's value exactly
//     (or one of the values when the claim is a list). A claim's number is
//     compared in its canonical decimal form (42, never 42.0 or 4.2e1).
//     Claim values are literal text, never patterns: `*`, `?` or `\` in a
//     token's sub match only themselves;
//   - `\` makes the next character literal (`\*`, `\?`, `\{`, `\}`, `\\`);
//   - everything else is literal. There are no character classes, no
//     regular expressions and no Unicode normalisation: `user:４２`
//     (fullwidth digits) or an NFD spelling is a different channel from
//     `user:42`, and never matches a socket whose sub is 42.
//
// A placeholder must sit between literal text or the pattern's ends, so that
// it stands for a whole segment: `user:{sub}` and `team:{teams}:chat` are
// valid, `user:{sub}*` and `{a}{b}` are refused.
//
// Choosing a rule ignores the socket; a rule with placeholders that matches
// the name but not the socket's claims denies, it does not fall through to a
// later, perhaps more permissive, rule. So `user:{sub}` guards every
// `user:…` channel.
//
// # Reserved names
//
// Channel names that start with `#` (ReservedPrefix) are the server's own:
// SocketCluster reserves `#` for its events, and the cluster's internal
// channels (InternalPrefix, `#scc:`) live under it. Clients can never
// subscribe or publish to them, whatever the rules say; the server API and
// the nodes themselves use them.
package rules
