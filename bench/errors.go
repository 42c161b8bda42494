package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"

	"github.com/sccgo/sccgo/client"
)

// Errors a run can end with, wrapped with details.
var (
	// ErrUnreachable means nothing answered at a URL.
	ErrUnreachable = errors.New("server unreachable")
	// ErrHandshakeRefused means the server refused the WebSocket upgrade
	// or the SocketCluster #handshake.
	ErrHandshakeRefused = errors.New("server refused the handshake")
	// ErrFDLimit means the process ran out of file descriptors (EMFILE).
	ErrFDLimit = errFDLimit
)

// describeDialError turns a client.Dial error into one that says what is
// wrong with the setup.
func describeDialError(url string, cfg Config, err error) error {
	var up *client.UpgradeError
	var se *client.Error
	var ce *client.CloseError
	switch {
	case errors.Is(err, context.Canceled):
		return err
	case isFDLimit(err):
		return fdLimitError(err)
	case errors.As(err, &up):
		hint := ""
		if up.StatusCode == 400 || up.StatusCode == 404 {
			hint = " (is the path right? SocketCluster serves /socketcluster/)"
		}
		return fmt.Errorf("%w: %s answered the WebSocket upgrade with HTTP %d%s: %v", ErrHandshakeRefused, url, up.StatusCode, hint, err)
	case errors.As(err, &se):
		return fmt.Errorf("%w: %s rejected #handshake: %v", ErrHandshakeRefused, url, err)
	case errors.As(err, &ce):
		return fmt.Errorf("%w: %s closed the connection during the handshake (%d %s)", ErrHandshakeRefused, url, ce.Code, ce.Reason)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("%w: nothing listens at %s (connection refused)", ErrUnreachable, url)
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return fmt.Errorf("%w: %s: out of local ports or source address not available (use -src-ips 127.0.0.1-127.0.0.250 for more ports): %v", ErrUnreachable, url, err)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%w: no handshake from %s within %s: %v", ErrUnreachable, url, cfg.ConnectTimeout, err)
	}
	var dnsErr *net.DNSError
	var opErr *net.OpError
	if errors.As(err, &dnsErr) || errors.As(err, &opErr) {
		return fmt.Errorf("%w: %s: %v", ErrUnreachable, url, err)
	}
	return fmt.Errorf("connecting to %s: %w", url, err)
}

// classify adds the file-descriptor diagnosis to any error.
func classify(err error, _ Config) error {
	if isFDLimit(err) {
		return fdLimitError(err)
	}
	return err
}

func isFDLimit(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) || errors.Is(err, errFDLimit)
}

func fdLimitError(err error) error {
	if errors.Is(err, errFDLimit) {
		return err
	}
	soft, hard := fdLimits()
	return fmt.Errorf("%w (EMFILE): the open-file limit is %d (hard %d); raise it with `ulimit -n` or spread the connections with -procs: %v",
		errFDLimit, soft, hard, err)
}
