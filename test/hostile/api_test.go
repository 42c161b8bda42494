package hostile

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sccgo/sccgo/frontend"
)

const hostileAPIKey = "hostile-api-key"

// TestHostileAPI attacks the server API and the internal channels behind
// it while a healthy subscriber and publisher keep running: every attack
// gets its HTTP status or SocketCluster error and is counted, and the pair
// sees every message.
func TestHostileAPI(t *testing.T) {
	const maxBody = 16 << 10
	f := startFrontend(t, func(c *frontend.Config) {
		c.API.Key = hostileAPIKey
		c.ServeAdmin = true // the API on the client port
		c.API.MaxBodyBytes = maxBody
		// The API shares the client port's header timeout; the default
		// attack limit (300ms) is too tight for 200 requests at once on a
		// loaded test machine.
		c.HandshakeTimeout = 5 * time.Second
		c.API.ReadTimeout = 300 * time.Millisecond
	})
	h := startHealthy(t, f.url, "healthy")
	base := "http://" + f.srv.Addr().String() + "/api/"
	refusals := func(reason string) float64 {
		return metric(t, f.srv.Registry(), "scc_frontend_api_refusals_total", "reason", reason)
	}
	call := func(t *testing.T, key, method string, body io.Reader, contentLength int64) (int, string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, base+method, body)
		if err != nil {
			t.Fatal(err)
		}
		if contentLength != 0 {
			req.ContentLength = contentLength
		}
		if key != "" {
			req.Header.Set("Authorization", "apikey "+key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return resp.StatusCode, string(b)
	}

	t.Run("huge bodies get 413", func(t *testing.T) {
		before := refusals("too_large")
		huge := `{"channel":"healthy","data":"` + strings.Repeat("A", 8<<20) + `"}`
		if st, body := call(t, hostileAPIKey, "publish", strings.NewReader(huge), 0); st != 413 {
			t.Fatalf("declared huge body: %d %s", st, body)
		}
		// Chunked, with no length declared: cut off at the bound all the same.
		pr, pw := io.Pipe()
		go func() {
			pw.Write([]byte(`{"channel":"healthy","data":"`))
			chunk := bytes.Repeat([]byte("B"), 64<<10)
			for i := 0; i < 128; i++ {
				if _, err := pw.Write(chunk); err != nil {
					return
				}
			}
			pw.Close()
		}()
		st, body := call(t, hostileAPIKey, "publish", pr, -1)
		pr.CloseWithError(io.ErrClosedPipe)
		if st != 413 {
			t.Fatalf("chunked huge body: %d %s", st, body)
		}
		if got := refusals("too_large"); got != before+2 {
			t.Fatalf("too_large refusals %v, want %v", got, before+2)
		}
	})

	t.Run("a stalled body gets 408", func(t *testing.T) {
		before := refusals("read_timeout")
		conn, err := net.Dial("tcp", f.srv.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "POST /api/publish HTTP/1.1\r\nHost: x\r\nAuthorization: apikey %s\r\nContent-Length: 1000\r\n\r\n{\"channel\":", hostileAPIKey)
		conn.SetReadDeadline(time.Now().Add(waitTimeout))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("no response to a stalled body: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestTimeout {
			t.Fatalf("stalled body: HTTP %d", resp.StatusCode)
		}
		if got := refusals("read_timeout"); got != before+1 {
			t.Fatalf("read_timeout refusals %v, want %v", got, before+1)
		}
	})

	t.Run("malformed bodies get 400", func(t *testing.T) {
		bodies := []string{
			`{"channel":"healthy","data":`,
			`{"channel":"healthy","data":1}}`,
			`{"channel":"healthy","data":1}{"channel":"healthy","data":2}`,
			strings.Repeat("[", 15000),
			`{"channel":"healthy","data":"` + "\xff\xfe" + `"}`,
			`{"channel":["healthy"],"data":1}`,
			`{"channel":"healthy","data":1,"extra":true}`,
			`"publish"`,
			`null`,
			"\x00\x01\x02",
		}
		before := refusals("malformed") + refusals("invalid")
		for _, b := range bodies {
			if st, resp := call(t, hostileAPIKey, "publish", strings.NewReader(b), 0); st != 400 {
				t.Errorf("body %.40q: %d %s", b, st, resp)
			} else if !strings.Contains(resp, `"error"`) {
				t.Errorf("body %.40q: no error object in %s", b, resp)
			}
		}
		// null decodes to no parameters and is refused as invalid.
		if got := refusals("malformed") + refusals("invalid"); got != before+float64(len(bodies)) {
			t.Fatalf("malformed and invalid refusals %v, want %v", got, before+float64(len(bodies)))
		}
	})

	t.Run("wrong keys from many connections are refused and counted", func(t *testing.T) {
		const n = 200
		before := refusals("wrong_key") + refusals("missing_key")
		var wg sync.WaitGroup
		var mu sync.Mutex
		statuses := map[int]int{}
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				key := []string{"", "x", hostileAPIKey[:len(hostileAPIKey)-1], "X" + hostileAPIKey, strings.Repeat("k", 4096)}[i%5]
				client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
				req, _ := http.NewRequest(http.MethodPost, base+"publish", strings.NewReader(`{"channel":"healthy","data":"forged"}`))
				if key != "" {
					req.Header.Set("X-API-Key", key)
				}
				resp, err := client.Do(req)
				if err != nil {
					t.Errorf("request %d: %v", i, err)
					return
				}
				resp.Body.Close()
				mu.Lock()
				statuses[resp.StatusCode]++
				mu.Unlock()
			}(i)
		}
		wg.Wait()
		if statuses[200] != 0 || statuses[401]+statuses[403] != n {
			t.Fatalf("statuses %v", statuses)
		}
		if got := refusals("wrong_key") + refusals("missing_key"); got != before+n {
			t.Fatalf("key refusals %v, want %v", got, before+n)
		}
	})

	t.Run("internal channels are out of clients' reach", func(t *testing.T) {
		c := dialSC(t, f.url)
		c.handshake("")
		for i, ch := range []string{"#scc:user:7", "#scc:nodes", "#scc:node:AAAAAAAA", "#scc:reply:x:1", "#scc:"} {
			c.sendf(`{"event":"#subscribe","data":{"channel":%q},"cid":%d}`, ch, 10+i)
			if e := c.replyError(10 + i); e["name"] != "SubscribeBlockedError" {
				t.Errorf("subscribe %s: %v", ch, e)
			}
			c.sendf(`{"event":"#publish","data":{"channel":%q,"data":{"op":"disconnect","code":4000}},"cid":%d}`, ch, 20+i)
			if e := c.replyError(20 + i); e["name"] != "PublishBlockedError" {
				t.Errorf("publish %s: %v", ch, e)
			}
		}
		// Nor through the API.
		if st, body := call(t, hostileAPIKey, "publish", strings.NewReader(`{"channel":"#scc:nodes","data":{"op":"query","what":"info","reply":"#scc:reply:x"}}`), 0); st != 400 {
			t.Fatalf("API publish to an internal channel: %d %s", st, body)
		}
		if !c.open() {
			t.Fatal("the prober was disconnected")
		}
	})

	t.Run("disconnects of unknown sockets and users touch nobody", func(t *testing.T) {
		for _, body := range []string{
			`{"client":"x"}`, `{"client":"` + strings.Repeat("A", 20) + `"}`, `{"client":"` + strings.Repeat("\u00e9", 40) + `"}`,
			`{"user":"*"}`, `{"user":""}`, `{"user":"user:*"}`,
		} {
			st, resp := call(t, hostileAPIKey, "disconnect", strings.NewReader(body), 0)
			if st != 200 && st != 400 {
				t.Errorf("disconnect %s: %d %s", body, st, resp)
			}
		}
		var r map[string]any
		st, resp := call(t, hostileAPIKey, "channels", strings.NewReader(`{"pattern":"`+strings.Repeat("*", 1000)+`x"}`), 0)
		if st != 200 || json.Unmarshal([]byte(resp), &r) != nil {
			t.Fatalf("channels with a pathological pattern: %d %s", st, resp)
		}
	})

	h.progress()
	h.check()
	if st, body := call(t, hostileAPIKey, "publish", strings.NewReader(fmt.Sprintf(`{"channel":%q,"data":1}`, "after")), 0); st != 200 {
		t.Fatalf("API unusable after the attacks: %d %s", st, body)
	}
}
