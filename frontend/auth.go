package frontend

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sccgo/sccgo/protocol"
)

// authAlgorithms returns the signing algorithm and the verify allow-list
// for a config. The allow-list never contains "none", and it only holds
// algorithms of the configured key's family, which is what refuses
// algorithm confusion (an HS256 token signed with the RSA public key).
func authAlgorithms(c Config) (sign string, verify []string, err error) {
	hs := []string{"HS256", "HS384", "HS512"}
	rs := []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
	es := []string{"ES256", "ES384", "ES512"}
	var family []string
	switch k := c.AuthPublicKey.(type) {
	case nil:
		family, sign = hs, "HS256"
	case *rsa.PublicKey:
		family, sign = rs, "RS256"
	case *ecdsa.PublicKey:
		family = es
		switch k.Curve {
		case elliptic.P384():
			sign = "ES384"
		case elliptic.P521():
			sign = "ES512"
		default:
			sign = "ES256"
		}
	default:
		return "", nil, fmt.Errorf("auth public key type %T is not supported", c.AuthPublicKey)
	}
	if c.AuthAlgorithm == "" {
		return sign, family, nil
	}
	if !slices.Contains(family, c.AuthAlgorithm) {
		return "", nil, fmt.Errorf("auth algorithm %q does not fit the configured key (want one of %s)", c.AuthAlgorithm, strings.Join(family, ", "))
	}
	return c.AuthAlgorithm, []string{c.AuthAlgorithm}, nil
}

// authenticator verifies and signs SocketCluster auth tokens.
type authenticator struct {
	signAlg  string
	verify   []string
	hmacKey  []byte
	pubKey   any
	privKey  any
	expiry   time.Duration
	maxAge   time.Duration
	maxBytes int
	audience string
	issuer   string
	parser   *jwt.Parser
	now      func() time.Time
	canSign  bool
	symmetic bool
}

func newAuthenticator(c Config) (*authenticator, error) {
	sign, verify, err := authAlgorithms(c)
	if err != nil {
		return nil, err
	}
	a := &authenticator{
		signAlg:  sign,
		verify:   verify,
		expiry:   c.AuthDefaultExpiry,
		maxAge:   c.AuthMaxTokenAge,
		maxBytes: c.AuthMaxTokenBytes,
		audience: c.AuthAudience,
		issuer:   c.AuthIssuer,
		now:      time.Now,
	}
	if c.AuthPublicKey != nil {
		a.pubKey, a.privKey = c.AuthPublicKey, c.AuthPrivateKey
		a.canSign = c.AuthPrivateKey != nil
	} else {
		a.hmacKey, a.symmetic, a.canSign = c.AuthKey, true, true
	}
	opts := []jwt.ParserOption{jwt.WithValidMethods(verify), jwt.WithTimeFunc(func() time.Time { return a.now() })}
	if c.AuthRequireExp {
		opts = append(opts, jwt.WithExpirationRequired())
	}
	if c.AuthAudience != "" {
		opts = append(opts, jwt.WithAudience(c.AuthAudience))
	}
	if c.AuthIssuer != "" {
		opts = append(opts, jwt.WithIssuer(c.AuthIssuer))
	}
	a.parser = jwt.NewParser(opts...)
	return a, nil
}

func (a *authenticator) keyFunc(t *jwt.Token) (any, error) {
	if _, ok := t.Method.(*jwt.SigningMethodHMAC); ok {
		if !a.symmetic {
			return nil, errors.New("symmetric algorithm with an asymmetric key")
		}
		return a.hmacKey, nil
	}
	if a.symmetic {
		return nil, errors.New("asymmetric algorithm with a symmetric key")
	}
	return a.pubKey, nil
}

// tokenInfo is what a verified token gives a socket.
type tokenInfo struct {
	signed string
	claims map[string]any
	exp    int64 // unix seconds; 0 when the token has no exp
}

// verifyToken checks a signed token and maps failures to SocketCluster's
// errors (reference §2.3), with jsonwebtoken's messages.
func (a *authenticator) verifyToken(signed string) (*tokenInfo, *protocol.Error) {
	if signed == "" {
		return nil, badToken(protocol.ErrNameAuthTokenInvalid, "jwt must be provided")
	}
	if a.maxBytes > 0 && len(signed) > a.maxBytes {
		// Refused before any base64 or JSON work on it.
		return nil, badToken(protocol.ErrNameAuthTokenInvalid, "jwt too large")
	}
	if strings.Count(signed, ".") != 2 {
		return nil, badToken(protocol.ErrNameAuthTokenInvalid, "jwt malformed")
	}
	claims := jwt.MapClaims{}
	tok, err := a.parser.ParseWithClaims(signed, claims, a.keyFunc)
	if err == nil && tok.Valid {
		return a.policy(signed, tok, claims)
	}
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return nil, badToken(protocol.ErrNameAuthTokenInvalid, "invalid token")
	case tok != nil && !slices.Contains(a.verify, headerAlg(tok)):
		return nil, badToken(protocol.ErrNameAuthTokenInvalid, "invalid algorithm")
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return nil, badToken(protocol.ErrNameAuthTokenInvalid, "invalid signature")
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return nil, badToken(protocol.ErrNameAuthTokenInvalid, "invalid algorithm")
	case errors.Is(err, jwt.ErrTokenExpired):
		return nil, protocol.NewError(protocol.ErrNameAuthTokenExpired, "jwt expired",
			"expiry", isoTime(claimTime(claims, "exp")), "isBadToken", true)
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		// Not a bad token: it becomes valid later, so the client keeps it.
		return nil, protocol.NewError(protocol.ErrNameAuthTokenNotBefore, "jwt not active",
			"date", isoTime(claimTime(claims, "nbf")))
	case errors.Is(err, jwt.ErrTokenInvalidAudience) || a.audience != "" && claims["aud"] == nil:
		// jsonwebtoken's wording for the same check.
		return nil, badToken(protocol.ErrNameAuthTokenInvalid, "jwt audience invalid. expected: "+a.audience)
	case errors.Is(err, jwt.ErrTokenInvalidIssuer) || a.issuer != "" && claims["iss"] == nil:
		return nil, badToken(protocol.ErrNameAuthTokenInvalid, "jwt issuer invalid. expected: "+a.issuer)
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return nil, badToken(protocol.ErrNameAuthTokenInvalid, "jwt exp required")
	case errors.Is(err, jwt.ErrTokenInvalidClaims):
		return nil, badToken(protocol.ErrNameAuthTokenInvalid, "invalid token")
	}
	msg := "invalid token"
	if err != nil {
		msg = err.Error()
	}
	return nil, badToken(protocol.ErrNameAuthToken, msg)
}

// policy applies the checks the JWT library leaves to its caller to a
// token whose signature and registered claims verified: critical header
// extensions and the maximum age.
func (a *authenticator) policy(signed string, tok *jwt.Token, claims jwt.MapClaims) (*tokenInfo, *protocol.Error) {
	if _, ok := tok.Header["crit"]; ok {
		// RFC 7515 §4.1.11: a recipient must reject a token whose crit
		// names an extension it does not understand, and this server
		// understands none.
		return nil, badToken(protocol.ErrNameAuthTokenInvalid, "jwt crit header not supported")
	}
	exp := claimTime(claims, "exp")
	if a.maxAge > 0 {
		iat, ok := claims["iat"]
		if !ok {
			return nil, badToken(protocol.ErrNameAuthTokenInvalid, "jwt iat required")
		}
		if _, num := iat.(float64); !num {
			return nil, badToken(protocol.ErrNameAuthTokenInvalid, "invalid token")
		}
		limit := claimTime(claims, "iat") + int64(a.maxAge/time.Second)
		if a.now().Unix() >= limit {
			// jsonwebtoken's maxAge error, which SocketCluster reports as
			// AuthTokenExpiredError.
			return nil, protocol.NewError(protocol.ErrNameAuthTokenExpired, "maxAge exceeded",
				"expiry", isoTime(limit), "isBadToken", true)
		}
		if exp == 0 || limit < exp {
			// The socket's expiry check then also enforces the age.
			exp = limit
		}
	}
	return &tokenInfo{signed: signed, claims: claims, exp: exp}, nil
}

func badToken(name, msg string) *protocol.Error {
	return protocol.NewError(name, msg, "isBadToken", true)
}

func headerAlg(t *jwt.Token) string {
	s, _ := t.Header["alg"].(string)
	return s
}

// claimTime reads a NumericDate claim as unix seconds (0 when absent).
func claimTime(c jwt.MapClaims, key string) int64 {
	switch v := c[key].(type) {
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return 0
		}
		return int64(v)
	case int64:
		return v
	case int:
		return int64(v)
	}
	return 0
}

// isoTime formats unix seconds like JavaScript's Date.toISOString.
func isoTime(sec int64) string {
	return time.Unix(sec, 0).UTC().Format("2006-01-02T15:04:05.000Z")
}

// ErrCannotSign means the server has a public key but no private key, so it
// cannot issue tokens.
var ErrCannotSign = errors.New("frontend: no key to sign auth tokens")

// sign signs claims like socket.setAuthToken: iat is added (kept if
// present), and exp = iat + default expiry unless claims already has exp.
// The returned claims are a copy with iat and exp set.
func (a *authenticator) sign(claims map[string]any) (*tokenInfo, error) {
	if !a.canSign {
		return nil, ErrCannotSign
	}
	c := jwt.MapClaims(maps.Clone(claims))
	if c == nil {
		c = jwt.MapClaims{}
	}
	iat := claimTime(c, "iat")
	if _, ok := c["iat"]; !ok {
		iat = a.now().Unix()
		c["iat"] = iat
	}
	if _, ok := c["exp"]; !ok {
		c["exp"] = iat + int64(a.expiry/time.Second)
	}
	// Tokens this server signs must verify on every frontend with the
	// same policy.
	if _, ok := c["aud"]; !ok && a.audience != "" {
		c["aud"] = a.audience
	}
	if _, ok := c["iss"]; !ok && a.issuer != "" {
		c["iss"] = a.issuer
	}
	var key any = a.hmacKey
	if !a.symmetic {
		key = a.privKey
	}
	s, err := jwt.NewWithClaims(jwt.GetSigningMethod(a.signAlg), c).SignedString(key)
	if err != nil {
		return nil, fmt.Errorf("signing auth token: %w", err)
	}
	return &tokenInfo{signed: s, claims: c, exp: claimTime(c, "exp")}, nil
}
