package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/sccgo/sccgo/client"
	"github.com/sccgo/sccgo/frontend"
)

// exampleServer starts a standalone frontend on a free loopback port and
// returns its client URL and a function that stops it.
func exampleServer(setup func(*frontend.Server)) (string, func()) {
	cfg := frontend.DefaultConfig()
	cfg.AuthKey = []byte("example-key-of-at-least-thirty-two-bytes")
	cfg.DrainDuration = 0
	srv, err := frontend.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	if setup != nil {
		setup(srv)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	<-srv.Ready()
	return "ws://" + ln.Addr().String() + "/socketcluster/", func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	}
}

// Dial a server, subscribe to a channel and publish to it: the publisher
// receives its own message like every other subscriber.
func Example() {
	url, stop := exampleServer(nil)
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	c, err := client.Dial(ctx, url, client.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	sub, err := c.Subscribe(ctx, "room", client.SubscribeOptions{})
	if err != nil {
		log.Fatal(err)
	}
	if err := c.Publish(ctx, "room", map[string]string{"text": "hello"}); err != nil {
		log.Fatal(err)
	}
	// Pre-encoded JSON is sent as it is.
	if err := c.Publish(ctx, "room", json.RawMessage(`{"text":"raw"}`)); err != nil {
		log.Fatal(err)
	}
	for range 2 {
		m, err := sub.Next(ctx)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(m.Channel, string(m.Data))
	}
	// Output:
	// room {"text":"hello"}
	// room {"text":"raw"}
}

// Invoke calls a server procedure; a SocketCluster error object comes back
// as *client.Error.
func ExampleClient_Invoke() {
	url, stop := exampleServer(func(srv *frontend.Server) {
		srv.HandleRPC("add", func(_ context.Context, _ *frontend.Socket, data json.RawMessage) (any, error) {
			var xs []int
			if err := json.Unmarshal(data, &xs); err != nil {
				return nil, err
			}
			sum := 0
			for _, x := range xs {
				sum += x
			}
			return sum, nil
		})
	})
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	c, err := client.Dial(ctx, url, client.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	sum, err := c.Invoke(ctx, "add", []int{1, 2, 3})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(sum))

	_, err = c.Invoke(ctx, "no-such-procedure", nil)
	var scErr *client.Error
	if errors.As(err, &scErr) {
		fmt.Println("error name:", scErr.Name)
	}
	// Output:
	// 6
	// error name: NoMatchingProcedureError
}

// Authenticate with a signed token (here HS256 with the server's key). A
// bad token is refused with the SocketCluster error name.
func ExampleClient_Authenticate() {
	url, stop := exampleServer(nil)
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	c, err := client.Dial(ctx, url, client.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	forged, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"username": "mallory"}).SignedString([]byte("wrong-key"))
	err = c.Authenticate(ctx, forged)
	var scErr *client.Error
	if errors.As(err, &scErr) {
		fmt.Println("refused:", scErr.Name, scErr.IsBadToken())
	}

	token, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"username": "alice"}).SignedString([]byte("example-key-of-at-least-thirty-two-bytes"))
	if err := c.Authenticate(ctx, token); err != nil {
		log.Fatal(err)
	}
	fmt.Println("authenticated:", c.IsAuthenticated())
	// Output:
	// refused: AuthTokenInvalidError true
	// authenticated: true
}
