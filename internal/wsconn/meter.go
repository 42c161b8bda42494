package wsconn

import "net"

// Meter is charged for what a connection receives, as it arrives from the
// socket and before the WebSocket library parses it: every byte, and every
// frame header, control frames and empty continuation frames included
// (coder/websocket answers pings and swallows pongs and empty fragments
// without surfacing them, so a limit applied to messages alone would not
// see them). A non-nil error from either method fails that read and every
// later one on the connection; the owner then closes it.
//
// Reads are serialized by the WebSocket library, but may happen on
// different goroutines (the close handshake reads too); implementations
// must synchronize their own state with anything else that touches it.
type Meter interface {
	// InboundBytes is called with the size of each read from the socket.
	InboundBytes(n int) error
	// InboundFrame is called when a frame header begins, with its opcode
	// and FIN bit.
	InboundFrame(opcode byte, fin bool) error
}

// meterConn runs a Meter over the bytes read from a connection, tracking
// frame boundaries with a small header parser.
type meterConn struct {
	net.Conn
	m    Meter
	err  error
	skip uint64   // payload bytes of the current frame still to pass
	hdr  [10]byte // header bytes so far, up to the payload length
	pos  uint8    // bytes in hdr
	need uint8    // header length up to (excluding) the mask key, once known
	mask uint8    // mask key bytes still to pass
}

func (c *meterConn) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.Conn.Read(p)
	if n > 0 {
		if merr := c.m.InboundBytes(n); merr != nil {
			c.err = merr
			return 0, merr
		}
		if merr := c.scan(p[:n]); merr != nil {
			c.err = merr
			return 0, merr
		}
	}
	return n, err
}

// scan follows frame boundaries through b (RFC 6455 §5.2).
func (c *meterConn) scan(b []byte) error {
	for len(b) > 0 {
		switch {
		case c.skip > 0:
			k := uint64(len(b))
			if k > c.skip {
				k = c.skip
			}
			c.skip -= k
			b = b[k:]
			continue
		case c.mask > 0:
			c.mask--
			b = b[1:]
			if c.mask == 0 {
				c.skip = c.payloadLen()
				c.pos, c.need = 0, 0
			}
			continue
		}
		x := b[0]
		b = b[1:]
		c.hdr[c.pos] = x
		c.pos++
		switch c.pos {
		case 1:
			if err := c.m.InboundFrame(x&0x0f, x&0x80 != 0); err != nil {
				return err
			}
			continue
		case 2:
			switch x & 0x7f {
			case 126:
				c.need = 4
			case 127:
				c.need = 10
			default:
				c.need = 2
			}
		}
		if c.pos == c.need {
			if c.hdr[1]&0x80 != 0 {
				c.mask = 4
				continue
			}
			c.skip = c.payloadLen()
			c.pos, c.need = 0, 0
		}
	}
	return nil
}

func (c *meterConn) payloadLen() uint64 {
	switch c.need {
	case 4:
		return uint64(c.hdr[2])<<8 | uint64(c.hdr[3])
	case 10:
		var n uint64
		for _, x := range c.hdr[2:10] {
			n = n<<8 | uint64(x)
		}
		return n
	}
	return uint64(c.hdr[1] & 0x7f)
}
