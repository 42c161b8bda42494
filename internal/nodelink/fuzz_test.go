package nodelink

import (
	"bytes"
	"testing"

	"github.com/sccgo/sccgo/protocol"
)

// FuzzVerifyHello feeds arbitrary first frames to the acceptor's check: it
// must never panic, and nothing but a Hello signed over this very nonce
// with the key may pass.
func FuzzVerifyHello(f *testing.F) {
	key := []byte("fuzz-key")
	nonce := bytes.Repeat([]byte{9}, nonceLen)
	dn := bytes.Repeat([]byte{3}, nonceLen)
	valid, _ := protocol.AppendMessage(nil, protocol.MsgHello, protocol.Hello{
		MinProto: 1, MaxProto: 1, NodeID: "fe", Role: protocol.RoleFrontend, Nonce: dn,
		MAC: protocol.HelloMAC(key, nonce, protocol.RoleFrontend, "fe", dn),
	})
	f.Add(valid)
	f.Add(valid[:len(valid)-3])
	f.Add(append(append([]byte(nil), valid...), valid...))
	other, _ := protocol.AppendMessage(nil, protocol.MsgSubscribe, protocol.Subscribe{ID: 1, Channels: []string{"x"}})
	f.Add(other)
	f.Add([]byte{})
	f.Add([]byte{byte(protocol.MsgHello), 0xdd, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, frame []byte) {
		h, proto, rerr := verifyHello(frame, key, nonce)
		if rerr != nil {
			switch rerr.Reason {
			case protocol.RejectMalformed, protocol.RejectAuth, protocol.RejectVersion:
			default:
				t.Fatalf("unexpected reason %q", rerr.Reason)
			}
			return
		}
		if !bytes.Equal(h.MAC, protocol.HelloMAC(key, nonce, h.Role, h.NodeID, h.Nonce)) || proto != protocol.NodeProtoMax {
			t.Fatalf("accepted %+v (proto %d)", h, proto)
		}
	})
}
