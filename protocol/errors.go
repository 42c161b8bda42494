package protocol

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// SocketCluster error names (sc-errors) used on the wire. Client code tests
// err.name, so these strings are part of the protocol.
const (
	ErrNameAuthTokenExpired     = "AuthTokenExpiredError"
	ErrNameAuthTokenInvalid     = "AuthTokenInvalidError"
	ErrNameAuthTokenNotBefore   = "AuthTokenNotBeforeError"
	ErrNameAuthToken            = "AuthTokenError"
	ErrNameAuth                 = "AuthError"
	ErrNameSilentMiddleware     = "SilentMiddlewareBlockedError"
	ErrNameInvalidAction        = "InvalidActionError"
	ErrNameInvalidArguments     = "InvalidArgumentsError"
	ErrNameInvalidOptions       = "InvalidOptionsError"
	ErrNameInvalidMessage       = "InvalidMessageError"
	ErrNameSocketProtocol       = "SocketProtocolError"
	ErrNameServerProtocol       = "ServerProtocolError"
	ErrNameHTTPServer           = "HTTPServerError"
	ErrNameResourceLimit        = "ResourceLimitError"
	ErrNameTimeout              = "TimeoutError"
	ErrNameBadConnection        = "BadConnectionError"
	ErrNameBroker               = "BrokerError"
	ErrNameProcessExit          = "ProcessExitError"
	ErrNameUnknown              = "UnknownError"
	ErrNameNoMatchingProcedure  = "NoMatchingProcedureError"
	ErrNameSubscribeBlocked     = "SubscribeBlockedError"
	ErrNamePublishBlocked       = "PublishBlockedError"
	ErrNameBadConnectionTimeout = "TimeoutError"
)

// Field is one extra property of an Error, kept in order.
type Field struct {
	Key   string
	Value any
}

// Error is a SocketCluster error object: {"message":…,"name":…,…fields}.
// It is what dehydrateError produces on the server and what the client
// hydrates into an Error with name and message.
type Error struct {
	Name    string
	Message string
	// Fields are the other enumerable properties, for example isBadToken,
	// expiry or type.
	Fields []Field
}

// NewError returns an Error with the given name, message and fields given
// as key, value pairs.
func NewError(name, message string, kv ...any) *Error {
	e := &Error{Name: name, Message: message}
	for i := 0; i+1 < len(kv); i += 2 {
		k, _ := kv[i].(string)
		e.Fields = append(e.Fields, Field{Key: k, Value: kv[i+1]})
	}
	return e
}

// Error implements error.
func (e *Error) Error() string {
	if e.Name == "" {
		return e.Message
	}
	return e.Name + ": " + e.Message
}

// Field returns the value of the extra property key, or nil.
func (e *Error) Field(key string) any {
	for _, f := range e.Fields {
		if f.Key == key {
			return f.Value
		}
	}
	return nil
}

// MarshalJSON writes {"message":…,"name":…,…fields}, leaving out an empty
// name like dehydrateError does for a plain Error.
func (e *Error) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, 64+len(e.Message))
	b = append(b, `{"message":`...)
	b = AppendString(b, e.Message)
	if e.Name != "" {
		b = append(b, `,"name":`...)
		b = AppendString(b, e.Name)
	}
	for _, f := range e.Fields {
		if f.Key == "message" || f.Key == "name" {
			continue
		}
		v, err := json.Marshal(f.Value)
		if err != nil {
			return nil, fmt.Errorf("encoding error field %q: %w", f.Key, err)
		}
		b = append(b, ',')
		b = AppendString(b, f.Key)
		b = append(b, ':')
		b = append(b, v...)
	}
	return append(b, '}'), nil
}

// UnmarshalJSON reads an error object, or a bare string (which a server may
// send for a string error), keeping unknown properties in order.
func (e *Error) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		*e = Error{}
		return json.Unmarshal(b, &e.Message)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return fmt.Errorf("error object: want object, got %v", tok)
	}
	*e = Error{}
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return err
		}
		k, _ := kt.(string)
		var v any
		if err := dec.Decode(&v); err != nil {
			return err
		}
		switch k {
		case "message":
			e.Message, _ = v.(string)
		case "name":
			e.Name, _ = v.(string)
		default:
			e.Fields = append(e.Fields, Field{Key: k, Value: v})
		}
	}
	_, err = dec.Token()
	return err
}

// IsBadToken reports whether the error carries isBadToken: true.
func (e *Error) IsBadToken() bool {
	v, _ := e.Field("isBadToken").(bool)
	return v
}
