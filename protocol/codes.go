package protocol

// Close codes used on client WebSocket connections. 1000-1009 are standard
// WebSocket codes; 4000-4009 are SocketCluster's (reference §1.10); 4010-4499
// are sccgo's own. socketcluster-client reconnects with jittered backoff for
// every code below 4500 except 1000, and immediately for 4000, 4001 and 1005.
// Codes of 4500 and above are permanent: the client does not reconnect.
const (
	// CloseNormal is a normal close; the client does not reconnect.
	CloseNormal = 1000
	// CloseGoingAway is sent when the server shuts down or drains.
	CloseGoingAway = 1001
	// CloseUnsupportedData is sent for binary frames: sccgo speaks the JSON
	// codec only.
	CloseUnsupportedData = 1003
	// CloseNoStatus is the client's code for a close without a status.
	CloseNoStatus = 1005
	// CloseAbnormal is an abnormal close (hang-up, failed upgrade).
	CloseAbnormal = 1006
	// CloseInvalidPayload is sent for a text frame that is not valid
	// UTF-8 (RFC 6455 §8.1).
	CloseInvalidPayload = 1007
	// CloseMessageTooBig is sent when a message exceeds the configured
	// maximum payload.
	CloseMessageTooBig = 1009

	// ClosePingTimeout is the client's code when no ping arrived in time.
	ClosePingTimeout = 4000
	// ClosePongTimeout is sent when no pong arrived within pingTimeout.
	ClosePongTimeout = 4001
	// CloseAuthSignFailed is sent when the server fails to sign a token.
	CloseAuthSignFailed = 4002
	// CloseHandshakeFailed is the client's code for a failed handshake RPC.
	CloseHandshakeFailed = 4003
	// CloseAuthSaveFailed is reserved by SocketCluster.
	CloseAuthSaveFailed = 4004
	// CloseHandshakeTimeout is sent when no #handshake arrived in time.
	CloseHandshakeTimeout = 4005
	// CloseBrokerBindFailed is reserved by SocketCluster.
	CloseBrokerBindFailed = 4006
	// CloseConnectTimeout is the client's code for a connect timeout.
	CloseConnectTimeout = 4007
	// CloseHandshakeRejected is sent for a malformed #handshake or
	// #authenticate (no numeric cid) or a rejected handshake.
	CloseHandshakeRejected = 4008
	// CloseMessageBeforeHandshake is sent when a packet other than a pong
	// arrives before the handshake.
	CloseMessageBeforeHandshake = 4009

	// CloseSlowConsumer is sccgo's code for a client whose outbound queue
	// overflowed. The client reconnects with backoff.
	CloseSlowConsumer = 4010
	// CloseRateLimited is sccgo's code for a client that exceeded the
	// inbound message rate. The client reconnects with backoff.
	CloseRateLimited = 4011
	// CloseServerOverloaded is sccgo's code for a connection refused after
	// the upgrade because a limit was reached.
	CloseServerOverloaded = 4012

	// ClosePermanentMin is the lowest application-defined permanent code.
	ClosePermanentMin = 4500
)

// CloseReason returns SocketCluster's text for a close code (sc-errors), or
// sccgo's for its own codes, or "" when there is none.
func CloseReason(code int) string {
	switch code {
	case CloseNormal:
		return "Socket closed normally"
	case CloseGoingAway:
		return "Socket was disconnected"
	case CloseUnsupportedData:
		return "Binary frames are not supported"
	case CloseNoStatus:
		return "Socket closed without status code"
	case CloseAbnormal:
		return "Socket hung up"
	case CloseInvalidPayload:
		return "Message was not valid UTF-8"
	case CloseMessageTooBig:
		return "Message was too big to process"
	case ClosePingTimeout:
		return "Server ping timed out"
	case ClosePongTimeout:
		return "Client pong timed out"
	case CloseAuthSignFailed:
		return "Server failed to sign auth token"
	case CloseHandshakeFailed:
		return "Failed to complete handshake"
	case CloseAuthSaveFailed:
		return "Client failed to save auth token"
	case CloseHandshakeTimeout:
		return "Did not receive #handshake from client before timeout"
	case CloseBrokerBindFailed:
		return "Failed to bind socket to message broker"
	case CloseConnectTimeout:
		return "Client connection establishment timed out"
	case CloseHandshakeRejected:
		return "Server rejected handshake from client"
	case CloseMessageBeforeHandshake:
		return "Server received a message before the client handshake"
	case CloseSlowConsumer:
		return "Client could not keep up with its messages"
	case CloseRateLimited:
		return "Client exceeded the inbound message rate"
	case CloseServerOverloaded:
		return "Server is at its connection limit"
	}
	return ""
}
