package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/sccgo/sccgo/internal/config"
)

// DefaultReloadInterval is the default of Config.ReloadInterval.
const DefaultReloadInterval = time.Second

// ErrNoCertificates is returned by New for a Config that names no files.
var ErrNoCertificates = errors.New("tlsconf: no certificate files configured")

// Config names the certificate files of one TLS endpoint.
type Config struct {
	// CertFile and KeyFile are this node's certificate chain and private
	// key, PEM. Both or neither.
	CertFile, KeyFile string
	// CAFile holds the PEM certificates peers are verified against. A
	// server with a CA asks clients for certificates and verifies them; a
	// client without one verifies servers against the system roots.
	CAFile string
	// RequireCA makes Validate insist on CertFile, KeyFile and CAFile
	// together (links, which authenticate both ends).
	RequireCA bool
	// ServerName, if set, is the name a client expects in the server's
	// certificate instead of the host it dialed (SCC_TLS_SERVER_NAME):
	// useful when every node holds a certificate for one shared name.
	ServerName string
	// ReloadInterval: the files are checked for changes at most this
	// often, on a handshake (SCC_TLS_RELOAD_INTERVAL). 0 checks on every
	// handshake. Default 1s.
	ReloadInterval time.Duration
	// Logger receives reloads and failed reloads (nil = discard).
	Logger *slog.Logger
}

// DefaultConfig returns a Config with the default reload interval and no
// files.
func DefaultConfig() Config { return Config{ReloadInterval: DefaultReloadInterval} }

// Enabled reports whether any file is named, which turns TLS on.
func (c Config) Enabled() bool { return c.CertFile != "" || c.KeyFile != "" || c.CAFile != "" }

// Validate reports a Config that cannot work. A Config with no files is
// valid (TLS off).
func (c Config) Validate() error {
	var errs []error
	if c.ReloadInterval < 0 {
		errs = append(errs, errors.New("ReloadInterval must not be negative"))
	}
	if c.Enabled() {
		if (c.CertFile == "") != (c.KeyFile == "") {
			errs = append(errs, errors.New("a certificate file needs its key file and the reverse"))
		}
		if c.RequireCA && (c.CertFile == "" || c.CAFile == "") {
			errs = append(errs, errors.New("mutual TLS needs a certificate, its key and a CA file"))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("tls config: %w", err)
	}
	return nil
}

// ReadLinks reads the settings of TLS between nodes: SCC_TLS_CERT_FILE,
// SCC_TLS_KEY_FILE, SCC_TLS_CA_FILE, SCC_TLS_SERVER_NAME and
// SCC_TLS_RELOAD_INTERVAL.
func ReadLinks(r *config.Reader) Config {
	c := DefaultConfig()
	c.RequireCA = true
	c.CertFile = r.String("SCC_TLS_CERT_FILE", "", "PEM certificate for links between nodes; setting it (with SCC_TLS_KEY_FILE and SCC_TLS_CA_FILE) turns on mutual TLS on every link, which every node must then use")
	c.KeyFile = r.String("SCC_TLS_KEY_FILE", "", "PEM private key of SCC_TLS_CERT_FILE")
	c.CAFile = r.String("SCC_TLS_CA_FILE", "", "PEM CA certificates that node certificates are verified against")
	c.ServerName = r.String("SCC_TLS_SERVER_NAME", "", "name expected in peers' certificates when dialing (default: the host dialed)")
	c.ReloadInterval = r.Duration("SCC_TLS_RELOAD_INTERVAL", DefaultReloadInterval, "certificate files are checked for changes at most this often, on a handshake (0: every handshake)")
	return c
}

// ReadClients reads the certificate a frontend serves wss:// to clients
// with: SCC_CLIENT_TLS_CERT_FILE and SCC_CLIENT_TLS_KEY_FILE, checked for
// changes every reload (the links' SCC_TLS_RELOAD_INTERVAL).
func ReadClients(r *config.Reader, reload time.Duration) Config {
	c := DefaultConfig()
	c.ReloadInterval = reload
	c.CertFile = r.String("SCC_CLIENT_TLS_CERT_FILE", "", "PEM certificate to serve wss:// to clients on the client port (empty: ws://, TLS left to an ingress)")
	c.KeyFile = r.String("SCC_CLIENT_TLS_KEY_FILE", "", "PEM private key of SCC_CLIENT_TLS_CERT_FILE")
	return c
}

// Store holds the current certificate and CA pool of one Config and
// reloads them when the files change. It is safe for concurrent use.
type Store struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	cur     *snapshot
	checked time.Time     // last time the files were stat'ed
	failed  []os.FileInfo // the file versions that last failed to load
	missing bool          // the last stat failed (logged once)
}

// snapshot is one loaded set of files.
type snapshot struct {
	cert   *tls.Certificate // nil without CertFile
	pool   *x509.CertPool   // nil without CAFile
	files  []os.FileInfo
	server *tls.Config
}

// New validates cfg and loads its files.
func New(cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if !cfg.Enabled() {
		return nil, ErrNoCertificates
	}
	s := &Store{cfg: cfg, log: cfg.Logger}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	files, err := s.stat()
	if err != nil {
		return nil, err
	}
	snap, err := s.load(files)
	if err != nil {
		return nil, err
	}
	s.cur, s.checked = snap, time.Now()
	return s, nil
}

func (s *Store) paths() []string {
	var ps []string
	for _, p := range []string{s.cfg.CertFile, s.cfg.KeyFile, s.cfg.CAFile} {
		if p != "" {
			ps = append(ps, p)
		}
	}
	return ps
}

func (s *Store) stat() ([]os.FileInfo, error) {
	ps := s.paths()
	out := make([]os.FileInfo, len(ps))
	for i, p := range ps {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		out[i] = fi
	}
	return out, nil
}

// load reads the files; files are their versions stat'ed just before.
func (s *Store) load(files []os.FileInfo) (*snapshot, error) {
	snap := &snapshot{files: files}
	if s.cfg.CertFile != "" {
		c, err := tls.LoadX509KeyPair(s.cfg.CertFile, s.cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls: loading %s and %s: %w", s.cfg.CertFile, s.cfg.KeyFile, err)
		}
		snap.cert = &c
	}
	if s.cfg.CAFile != "" {
		b, err := os.ReadFile(s.cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		snap.pool = x509.NewCertPool()
		if !snap.pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("tls: no PEM certificate in %s", s.cfg.CAFile)
		}
	}
	snap.server = &tls.Config{
		MinVersion: tls.VersionTLS12,
		// WebSockets upgrade over HTTP/1.1 only.
		NextProtos: []string{"http/1.1"},
	}
	if snap.cert != nil {
		snap.server.Certificates = []tls.Certificate{*snap.cert}
	}
	if snap.pool != nil {
		snap.server.ClientCAs = snap.pool
		// Verified when given; the link endpoint insists on one, while
		// HTTPS probes of /healthz need none.
		snap.server.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return snap, nil
}

// current returns the current snapshot, reloading it first when the
// reload interval has passed and a file has changed.
func (s *Store) current() *snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if s.cfg.ReloadInterval > 0 && now.Sub(s.checked) < s.cfg.ReloadInterval {
		return s.cur
	}
	s.checked = now
	files, err := s.stat()
	if err == nil {
		s.missing = false
	}
	if err != nil {
		if !s.missing {
			s.log.Warn("tls files unreadable; keeping the loaded ones", "err", err)
		}
		s.missing = true
		return s.cur
	}
	if sameFiles(files, s.cur.files) || sameFiles(files, s.failed) {
		return s.cur
	}
	snap, err := s.load(files)
	if err != nil {
		s.failed = files
		s.log.Warn("tls files changed but do not load; keeping the loaded ones", "err", err)
		return s.cur
	}
	s.cur, s.failed = snap, nil
	s.log.Info("tls files reloaded", "cert", s.cfg.CertFile, "ca", s.cfg.CAFile)
	return s.cur
}

func sameFiles(a, b []os.FileInfo) bool {
	if len(a) != len(b) || len(a) == 0 {
		return false
	}
	for i := range a {
		if !os.SameFile(a[i], b[i]) || !a[i].ModTime().Equal(b[i].ModTime()) || a[i].Size() != b[i].Size() {
			return false
		}
	}
	return true
}

// ServerConfig returns the configuration to serve TLS with
// (tls.NewListener). Each handshake takes the current certificate and CA.
func (s *Store) ServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"http/1.1"},
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return s.current().server, nil
		},
	}
}

// ClientConfig returns a configuration to dial with: it presents the
// current certificate (read at each handshake) and verifies the server
// against the CA current now (the system roots without a CA file), for
// ServerName or, if that is empty, the host dialed. Call it once per dial
// so that a reloaded CA takes effect.
func (s *Store) ClientConfig() *tls.Config {
	snap := s.current()
	c := &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"http/1.1"},
		RootCAs:    snap.pool,
		ServerName: s.cfg.ServerName,
	}
	if snap.cert != nil {
		c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if cur := s.current().cert; cur != nil {
				return cur, nil
			}
			return &tls.Certificate{}, nil
		}
	}
	return c
}
