// Package wsframe writes raw client-side WebSocket frames (RFC 6455) byte
// by byte, for the tools that must send what a well-behaved client never
// would: partial messages, endless continuations, oversized declared
// lengths, floods of control frames. The hostile and hardening tests and
// the chaos attacker use it; servers never do.
package wsframe

import "encoding/binary"

// Opcodes of RFC 6455 §5.2.
const (
	OpContinuation byte = 0x0
	OpText         byte = 0x1
	OpBinary       byte = 0x2
	OpClose        byte = 0x8
	OpPing         byte = 0x9
	OpPong         byte = 0xA
)

// mask is the fixed masking key every frame uses: servers must unmask
// whatever key a client chose, and a fixed one keeps output reproducible.
var mask = [4]byte{7, 1, 3, 5}

// AppendClient appends one masked client frame with opcode op, the FIN bit
// if fin, and payload, using the shortest length encoding.
func AppendClient(dst []byte, op byte, fin bool, payload []byte) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	dst = append(dst, b0)
	switch n := len(payload); {
	case n < 126:
		dst = append(dst, 0x80|byte(n))
	case n < 1<<16:
		dst = append(dst, 0x80|126)
		dst = binary.BigEndian.AppendUint16(dst, uint16(n))
	default:
		dst = append(dst, 0x80|127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	dst = append(dst, mask[:]...)
	for i, b := range payload {
		dst = append(dst, b^mask[i%4])
	}
	return dst
}

// AppendText appends one complete masked text frame.
func AppendText(dst []byte, payload string) []byte {
	return AppendClient(dst, OpText, true, []byte(payload))
}
