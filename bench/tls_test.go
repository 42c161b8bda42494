package bench

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sccgo/sccgo/frontend"
	"github.com/sccgo/sccgo/internal/devcert"
	"github.com/sccgo/sccgo/internal/tlsconf"
)

func TestFanoutOverWSS(t *testing.T) {
	ca, err := devcert.NewCA("bench")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	f, err := ca.WriteIssued(dir, "frontend", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	tc := tlsconf.DefaultConfig()
	tc.CertFile, tc.KeyFile = f.CertFile, f.KeyFile
	st, err := tlsconf.New(tc)
	if err != nil {
		t.Fatal(err)
	}
	fc := frontend.DefaultConfig()
	fc.TLS = st.ServerConfig()
	url := "wss://" + strings.TrimPrefix(startFrontendWith(t, fc), "ws://")

	cfg := shortConfig(url)
	cfg.TLSCAFile = f.CAFile
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if !res.Check.OK() || !res.Pass || res.Check.Received == 0 {
		t.Fatalf("check failed: %+v notes %v", res.Check, res.Notes)
	}

	bad := shortConfig(url)
	bad.TLSCAFile = filepath.Join(dir, "missing.pem")
	if err := bad.Validate(); !errors.Is(err, ErrConfig) {
		t.Fatalf("missing CA file: %v", err)
	}
}
