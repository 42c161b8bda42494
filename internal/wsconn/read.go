package wsconn

import "io"

// ReadAppend appends everything r yields until EOF to b and returns the
// extended slice, like io.ReadAll but into a buffer the caller reuses
// (a WebSocket message reader, read into a pooled buffer).
func ReadAppend(b []byte, r io.Reader) ([]byte, error) {
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}
