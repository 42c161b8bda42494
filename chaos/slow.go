package chaos

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"

	"github.com/coder/websocket"
)

// SlowConsumer is a SocketCluster connection that subscribes to a channel
// and then never reads: its socket's receive buffer is small, so the
// frontend's queue for it fills quickly.
type SlowConsumer struct {
	conn *websocket.Conn
}

// DialSlowConsumer connects to url, completes the SocketCluster handshake,
// subscribes to channel and stops reading.
func DialSlowConsumer(ctx context.Context, url, channel string) (*SlowConsumer, error) {
	d := &net.Dialer{Timeout: 5 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		return errors.Join(err, serr)
	}}
	hc := &http.Client{Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true, Proxy: nil}}
	conn, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: hc})
	if err != nil {
		return nil, err
	}
	conn.SetReadLimit(16 << 20)
	sc := &SlowConsumer{conn: conn}
	steps := []struct{ frame, want string }{
		{`{"event":"#handshake","data":{"authToken":null},"cid":1}`, `"rid":1`},
		{fmt.Sprintf(`{"event":"#subscribe","data":{"channel":%q},"cid":2}`, channel), `"rid":2`},
	}
	for _, s := range steps {
		if err := conn.Write(ctx, websocket.MessageText, []byte(s.frame)); err != nil {
			conn.CloseNow()
			return nil, err
		}
		for {
			_, b, err := conn.Read(ctx)
			if err != nil {
				conn.CloseNow()
				return nil, err
			}
			if len(b) == 0 { // a ping
				_ = conn.Write(ctx, websocket.MessageText, nil)
				continue
			}
			if bytes.Contains(b, []byte(s.want)) {
				if bytes.Contains(b, []byte(`"error"`)) {
					conn.CloseNow()
					return nil, fmt.Errorf("slow consumer: %s refused: %s", s.want, b)
				}
				break
			}
		}
	}
	return sc, nil
}

// Drain reads everything the server sent until the connection ends (or
// ctx does) and returns the close code it ended with: the frame's code
// when the server's close frame arrived, -1 when the connection was cut
// without one.
func (sc *SlowConsumer) Drain(ctx context.Context) (code int, bytesRead int64) {
	for {
		_, b, err := sc.conn.Read(ctx)
		bytesRead += int64(len(b))
		if err != nil {
			if c := websocket.CloseStatus(err); c != -1 {
				return int(c), bytesRead
			}
			if strings.Contains(err.Error(), "status = StatusCode(") {
				// An application code the library does not name.
				var n int
				if _, perr := fmt.Sscanf(err.Error()[strings.Index(err.Error(), "StatusCode(")+len("StatusCode("):], "%d", &n); perr == nil {
					return n, bytesRead
				}
			}
			return -1, bytesRead
		}
	}
}

// Close cuts the connection.
func (sc *SlowConsumer) Close() { sc.conn.CloseNow() }
