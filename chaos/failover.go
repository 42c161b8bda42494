package chaos

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"
)

// FailoverHTTPClient returns an HTTP client for client.Options.HTTPClient
// whose dialer tries the address the URL names first and then every
// address in alternates (host:port) in order: a client whose frontend died
// reconnects, with its own jittered backoff, to another frontend and
// resubscribes there. local, if set, is the source address.
func FailoverHTTPClient(alternates []string, local *net.TCPAddr) *http.Client {
	d := &net.Dialer{Timeout: time.Second}
	if local != nil {
		d.LocalAddr = local
	}
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		var errs []error
		tried := map[string]bool{}
		for _, a := range append([]string{addr}, alternates...) {
			if tried[a] {
				continue
			}
			tried[a] = true
			nc, err := d.DialContext(ctx, network, a)
			if err == nil {
				return nc, nil
			}
			errs = append(errs, err)
			if ctx.Err() != nil {
				break
			}
		}
		return nil, errors.Join(errs...)
	}
	return &http.Client{Transport: &http.Transport{
		Proxy:             nil,
		DialContext:       dial,
		DisableKeepAlives: true,
	}}
}
