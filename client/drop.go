package client

// Drop cuts the current connection as a network failure would, with no
// closing handshake; the Client then reconnects with its Backoff and
// resubscribes every Subscription (recovering the messages missed on
// channels with history). It reports false when there is no open
// connection or reconnection is disabled. For failure tests and load
// generators, and for apps that know their network changed.
func (c *Client) Drop() bool {
	if c.opts.DisableReconnect {
		return false
	}
	cn := c.cur.Load()
	if cn == nil {
		return false
	}
	if cn.nc != nil {
		_ = cn.nc.Close()
		return true
	}
	cn.closeWith(4000, "dropped by the client")
	return true
}
