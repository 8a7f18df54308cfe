package siptls

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Errors.
var (
	// ErrConfig: an invalid option or a missing file, naming it.
	ErrConfig = errors.New("siptls: invalid configuration")
	// ErrCertificate: a certificate or key that cannot be used, naming the
	// file and why.
	ErrCertificate = errors.New("siptls: unusable certificate")
)

// File names of the self-signed certificate and key in the data directory.
const (
	CertFile = "tls-cert.pem"
	KeyFile  = "tls-key.pem"
)

type certConfig struct {
	certFile, keyFile string
	dir               string
	names             []string
	validity          time.Duration
	renewBefore       time.Duration
	now               func() time.Time
	log               *slog.Logger
}

// CertOption configures Certificate.
type CertOption func(*certConfig) error

// WithFiles loads the certificate chain and key from PEM files (an
// operator's certificate, e.g. from an ACME client).
func WithFiles(certFile, keyFile string) CertOption {
	return func(c *certConfig) error {
		if certFile == "" || keyFile == "" {
			return fmt.Errorf("%w: tls_cert and tls_key must both be set", ErrConfig)
		}
		c.certFile, c.keyFile = certFile, keyFile
		return nil
	}
}

// WithSelfSigned keeps a self-signed certificate in dir (CertFile and
// KeyFile), made on first use for names (DNS names and IP addresses, the
// first one also the subject's common name) and reused after; it is made
// anew when it no longer covers names or is about to expire.
func WithSelfSigned(dir string, names ...string) CertOption {
	return func(c *certConfig) error {
		if dir == "" {
			return fmt.Errorf("%w: no data directory for the self-signed certificate", ErrConfig)
		}
		if len(names) == 0 {
			return fmt.Errorf("%w: a self-signed certificate needs at least one name", ErrConfig)
		}
		for _, n := range names {
			if _, err := netip.ParseAddr(n); err != nil && !validDNSName(n) {
				return fmt.Errorf("%w: %q is neither a DNS name nor an IP address", ErrConfig, n)
			}
		}
		c.dir, c.names = dir, names
		return nil
	}
}

// WithValidity sets how long a new self-signed certificate is valid
// (default 1 year) and how long before its end it is replaced (default 30
// days).
func WithValidity(validity, renewBefore time.Duration) CertOption {
	return func(c *certConfig) error {
		if validity <= renewBefore || renewBefore < 0 {
			return fmt.Errorf("%w: validity %v must exceed renewal %v", ErrConfig, validity, renewBefore)
		}
		c.validity, c.renewBefore = validity, renewBefore
		return nil
	}
}

// WithClock sets the clock (default time.Now).
func WithClock(now func() time.Time) CertOption {
	return func(c *certConfig) error {
		if now == nil {
			return fmt.Errorf("%w: nil clock", ErrConfig)
		}
		c.now = now
		return nil
	}
}

// WithLogger sets the logger (default none): it says when a certificate is
// made or a key file is readable by others.
func WithLogger(l *slog.Logger) CertOption {
	return func(c *certConfig) error {
		if l == nil {
			return fmt.Errorf("%w: nil logger", ErrConfig)
		}
		c.log = l
		return nil
	}
}

// Certificate returns the certificate and key to serve: from files
// (WithFiles) or self-signed in a data directory (WithSelfSigned); exactly
// one of the two must be given.
func Certificate(opts ...CertOption) (tls.Certificate, error) {
	c := certConfig{validity: 365 * 24 * time.Hour, renewBefore: 30 * 24 * time.Hour, now: time.Now, log: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		if err := o(&c); err != nil {
			return tls.Certificate{}, err
		}
	}
	switch {
	case c.certFile != "" && c.dir != "":
		return tls.Certificate{}, fmt.Errorf("%w: both certificate files and a self-signed certificate", ErrConfig)
	case c.certFile != "":
		return loadPair(c.certFile, c.keyFile, c.log)
	case c.dir != "":
		return selfSigned(&c)
	}
	return tls.Certificate{}, fmt.Errorf("%w: no certificate: give files or a data directory", ErrConfig)
}

func loadPair(certFile, keyFile string, log *slog.Logger) (tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("%w: %s, %s: %v", ErrCertificate, certFile, keyFile, err)
	}
	if st, err := os.Stat(keyFile); err == nil && st.Mode().Perm()&0o077 != 0 {
		log.Warn("TLS key file is readable by others", "file", keyFile, "mode", st.Mode().Perm().String())
	}
	return cert, nil
}

func selfSigned(c *certConfig) (tls.Certificate, error) {
	certPath, keyPath := filepath.Join(c.dir, CertFile), filepath.Join(c.dir, KeyFile)
	_, errC := os.Stat(certPath)
	_, errK := os.Stat(keyPath)
	if errC == nil && errK == nil {
		cert, err := loadPair(certPath, keyPath, c.log)
		if err != nil {
			return tls.Certificate{}, err
		}
		why := reuseProblem(cert.Leaf, c.names, c.now(), c.renewBefore)
		if why == "" {
			return cert, nil
		}
		c.log.Info("making a new self-signed TLS certificate", "reason", why, "file", certPath)
	} else if !errors.Is(errC, os.ErrNotExist) && errC != nil {
		return tls.Certificate{}, fmt.Errorf("%w: %s: %v", ErrCertificate, certPath, errC)
	}
	certPEM, keyPEM, err := makeSelfSigned(c.names, c.now(), c.validity)
	if err != nil {
		return tls.Certificate{}, err
	}
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		return tls.Certificate{}, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	// The key first: a cert file without its key is never left behind.
	if err := writeAtomic(keyPath, keyPEM, 0o600); err != nil {
		return tls.Certificate{}, err
	}
	if err := writeAtomic(certPath, certPEM, 0o644); err != nil {
		return tls.Certificate{}, err
	}
	c.log.Info("self-signed TLS certificate made", "file", certPath, "names", strings.Join(c.names, ","))
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("%w: %v", ErrCertificate, err)
	}
	return cert, nil
}

// reuseProblem says why leaf cannot be kept, or "".
func reuseProblem(leaf *x509.Certificate, names []string, now time.Time, renewBefore time.Duration) string {
	if now.Add(renewBefore).After(leaf.NotAfter) {
		return "expires " + leaf.NotAfter.Format(time.RFC3339)
	}
	if now.Before(leaf.NotBefore) {
		return "not valid before " + leaf.NotBefore.Format(time.RFC3339)
	}
	for _, n := range names {
		if ip, err := netip.ParseAddr(n); err == nil {
			if !slices.ContainsFunc(leaf.IPAddresses, func(a net.IP) bool { return a.Equal(ip.AsSlice()) }) {
				return "does not cover " + n
			}
		} else if !slices.Contains(leaf.DNSNames, strings.ToLower(n)) {
			return "does not cover " + n
		}
	}
	return ""
}

func makeSelfSigned(names []string, now time.Time, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("siptls: key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, fmt.Errorf("siptls: serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: names[0], Organization: []string{"hiersip"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	for _, n := range names {
		if ip, err := netip.ParseAddr(n); err == nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip.AsSlice())
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, strings.ToLower(n))
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("siptls: certificate: %w", err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("siptls: key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), nil
}

// writeAtomic writes data to path through a temporary file in the same
// directory, synced and renamed, so a reader never sees half a file.
func writeAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("siptls: %w", err)
	}
	tmp := f.Name()
	err = f.Chmod(mode)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	err = errors.Join(err, f.Close())
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("siptls: write %s: %w", path, err)
	}
	return nil
}

func validDNSName(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, r := range l {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				if !(r == '*' && l == "*") {
					return false
				}
			}
		}
	}
	return true
}
