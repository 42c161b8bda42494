package config

import (
	"errors"
	"fmt"
	"strings"
)

// MinAuthKeyBytes is the shortest SCC_AUTH_KEY a node accepts in cluster
// mode: 32 bytes, the size of the HMAC-SHA256 output the key feeds (for
// example `openssl rand -base64 32`, which prints 44 characters).
const MinAuthKeyBytes = 32

// InsecureNoAuthEnv is the explicit opt-in that lets a node run its links
// and gossip with an empty, short or published SCC_AUTH_KEY. Anyone who can
// reach a node's ports then controls the cluster.
const InsecureNoAuthEnv = "SCC_INSECURE_NO_AUTH"

// Errors CheckAuthKey returns.
var (
	ErrNoAuthKey      = errors.New("SCC_AUTH_KEY is empty")
	ErrShortAuthKey   = errors.New("SCC_AUTH_KEY is too short")
	ErrExampleAuthKey = errors.New("SCC_AUTH_KEY is an example key published with sccgo")
)

// exampleAuthKeys are keys that appear in sccgo's manifests, docs and
// examples. They protect nothing, so no node accepts them as its cluster
// key (compared without case and surrounding space).
var exampleAuthKeys = []string{
	"REPLACE-ME",
	"dev-only-insecure-cluster-key",
	"dev-only-insecure-client-key",
	"test-cluster-key",
	"hostile-test-key",
	"chaos-key",
	"changeme",
	"secret",
}

// CheckAuthKey reports why key cannot protect a cluster: it is empty,
// shorter than MinAuthKeyBytes, or one of the example keys sccgo ships.
// insecure (SCC_INSECURE_NO_AUTH=true) accepts any key; the caller must
// then warn loudly.
func CheckAuthKey(key []byte, insecure bool) error {
	if insecure {
		return nil
	}
	k := strings.TrimSpace(string(key))
	for _, ex := range exampleAuthKeys {
		if strings.EqualFold(k, ex) {
			return fmt.Errorf("%w; generate one with `openssl rand -base64 32` (or set %s=true to run without authentication)", ErrExampleAuthKey, InsecureNoAuthEnv)
		}
	}
	switch {
	case len(key) == 0:
		return fmt.Errorf("%w: every node needs the same random key of at least %d bytes, e.g. `openssl rand -base64 32` (or set %s=true to run the cluster open)", ErrNoAuthKey, MinAuthKeyBytes, InsecureNoAuthEnv)
	case len(key) < MinAuthKeyBytes:
		return fmt.Errorf("%w: %d bytes, at least %d needed, e.g. `openssl rand -base64 32` (or set %s=true to run without authentication)", ErrShortAuthKey, len(key), MinAuthKeyBytes, InsecureNoAuthEnv)
	}
	return nil
}

// InsecureAuthWarning is the line a node logs, at warn level, when it runs
// under SCC_INSECURE_NO_AUTH.
const InsecureAuthWarning = "SCC_INSECURE_NO_AUTH is set: inter-node links and gossip accept any host that can reach this node's ports; never use it outside a private test network"
