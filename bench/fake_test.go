package bench

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/sccgo/sccgo/protocol"
)

// faultyServer is a minimal SocketCluster server that breaks delivery on
// purpose, by sequence number, for every subscriber alike:
//
//	seq%10 == 3: dropped
//	seq%10 == 5: delivered twice
//	seq%10 == 7: held back and delivered after the next message of its
//	             stream (lost if there is none)
//
// With refuse set it rejects every #handshake instead.
type faultyServer struct {
	refuse bool

	mu      sync.Mutex
	remotes map[string]int // connections per client IP
	subs    map[string]map[*fakeConn]bool
	held    map[streamKey][]byte // frame held back per publisher and channel
}

type fakeConn struct {
	mu sync.Mutex
	ws *websocket.Conn
}

func (c *fakeConn) send(ctx context.Context, frame []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ws.Write(ctx, websocket.MessageText, frame)
}

// startFaultyServer serves a faultyServer on 127.0.0.1:0 and returns its URL.
func startFaultyServer(t *testing.T, refuse bool) string {
	_, url := startFaulty(t, refuse)
	return url
}

func startFaulty(t *testing.T, refuse bool) (*faultyServer, string) {
	t.Helper()
	fs := &faultyServer{refuse: refuse, remotes: map[string]int{}, subs: map[string]map[*fakeConn]bool{}, held: map[streamKey][]byte{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
			fs.mu.Lock()
			fs.remotes[host]++
			fs.mu.Unlock()
		}
		wg.Add(1)
		defer wg.Done()
		fs.serve(ctx, &fakeConn{ws: ws})
	})}
	go srv.Serve(ln)
	t.Cleanup(func() {
		cancel()
		srv.Close()
		wg.Wait()
	})
	return fs, "ws://" + ln.Addr().String() + "/socketcluster/"
}

func (fs *faultyServer) serve(ctx context.Context, c *fakeConn) {
	defer func() {
		fs.mu.Lock()
		for _, m := range fs.subs {
			delete(m, c)
		}
		fs.mu.Unlock()
		c.ws.CloseNow()
	}()
	for {
		_, msg, err := c.ws.Read(ctx)
		if err != nil {
			return
		}
		pkts, err := protocol.DecodePackets(msg)
		if err != nil {
			continue
		}
		for _, p := range pkts {
			switch p.Event {
			case protocol.EventHandshake:
				if fs.refuse {
					c.send(ctx, []byte(`{"rid":`+string(p.CID)+`,"error":{"message":"go away","name":"ScBlocked","statusCode":4008}}`))
					c.ws.Close(4008, "go away")
					return
				}
				c.send(ctx, []byte(`{"rid":`+string(p.CID)+`,"data":{"id":"fake","pingTimeout":30000,"isAuthenticated":false}}`))
			case protocol.EventSubscribe:
				req, _ := protocol.DecodeSubscribe(p.Data)
				fs.mu.Lock()
				if fs.subs[req.Channel] == nil {
					fs.subs[req.Channel] = map[*fakeConn]bool{}
				}
				fs.subs[req.Channel][c] = true
				fs.mu.Unlock()
				c.send(ctx, []byte(`{"rid":`+string(p.CID)+`}`))
			case protocol.EventPublish:
				pub, _ := protocol.DecodePublish(p.Data)
				fs.publish(ctx, pub.Channel, pub.Data)
				if p.CID != nil {
					c.send(ctx, []byte(`{"rid":`+string(p.CID)+`}`))
				}
			}
		}
	}
}

func (fs *faultyServer) publish(ctx context.Context, channel string, data json.RawMessage) {
	pl, err := DecodePayload(data)
	if err != nil {
		return
	}
	frame := protocol.AppendPublish(nil, channel, data)
	key := streamKey{pl.Publisher, channel}
	var frames [][]byte
	fs.mu.Lock()
	switch pl.Seq % 10 {
	case 3:
	case 5:
		frames = [][]byte{frame, frame}
	case 7:
		fs.held[key] = frame
	default:
		frames = [][]byte{frame}
	}
	if h, ok := fs.held[key]; ok && pl.Seq%10 != 7 {
		frames = append(frames, h)
		delete(fs.held, key)
	}
	var to []*fakeConn
	for c := range fs.subs[channel] {
		to = append(to, c)
	}
	fs.mu.Unlock()
	for _, c := range to {
		for _, f := range frames {
			c.send(ctx, f)
		}
	}
}

// faults returns what faultyServer does to sequence numbers 1..n.
func faults(n uint64) (lost, dup, ooo int64) {
	for s := uint64(1); s <= n; s++ {
		switch s % 10 {
		case 3:
			lost++
		case 5:
			dup++
		case 7:
			if s < n {
				ooo++
			} else {
				lost++
			}
		}
	}
	return
}

func TestCheckerCountsInjectedFaults(t *testing.T) {
	url := startFaultyServer(t, false)
	cfg := shortConfig(url)
	cfg.Subscribers = 4
	cfg.Channels = 2
	cfg.SubsPerConn = 2
	cfg.Publishers = 2
	cfg.Rate = 2000
	cfg.MessagesPerPublisher = 95
	cfg.Drain = time.Second
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	// Each publisher sends 48 messages to its first channel and 47 to the
	// other; every subscriber is on both channels.
	var lost, dup, ooo int64
	for _, n := range []uint64{48, 47, 48, 47} {
		l, d, o := faults(n)
		lost, dup, ooo = lost+l, dup+d, ooo+o
	}
	subs := int64(cfg.Subscribers)
	c := res.Check
	if c.Expected != 190*subs {
		t.Errorf("expected %d, want %d", c.Expected, 190*subs)
	}
	if c.Lost != lost*subs || c.Duplicated != dup*subs || c.OutOfOrder != ooo*subs || c.Unexpected != 0 || c.Malformed != 0 {
		t.Errorf("got lost %d dup %d ooo %d unexpected %d malformed %d; want lost %d dup %d ooo %d",
			c.Lost, c.Duplicated, c.OutOfOrder, c.Unexpected, c.Malformed, lost*subs, dup*subs, ooo*subs)
	}
	if c.Received != c.Expected-c.Lost+c.Duplicated {
		t.Errorf("received %d, want %d", c.Received, c.Expected-c.Lost+c.Duplicated)
	}
	if len(c.Streams) != 4 || res.Pass || res.Correct {
		t.Errorf("streams %+v, pass %v", c.Streams, res.Pass)
	}
	for _, s := range c.Streams {
		l, d, o := faults(uint64(s.Expected / subs))
		if s.Lost != l*subs || s.Duplicated != d*subs || s.OutOfOrder != o*subs {
			t.Errorf("stream %+v: want lost %d dup %d ooo %d", s, l*subs, d*subs, o*subs)
		}
	}
}
