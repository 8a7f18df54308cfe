package siptls_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hiersip/hiersip/siptls"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestSelfSigned(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	cert, err := siptls.Certificate(siptls.WithSelfSigned(dir, "node.example.test", "127.0.0.1", "::1"))
	if err != nil {
		t.Fatal(err)
	}
	leaf := cert.Leaf
	if leaf.DNSNames[0] != "node.example.test" || len(leaf.IPAddresses) != 2 || leaf.Subject.CommonName != "node.example.test" {
		t.Errorf("SANs %v %v CN %s", leaf.DNSNames, leaf.IPAddresses, leaf.Subject.CommonName)
	}
	pub, ok := leaf.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		t.Errorf("key %T, want ECDSA P-256", leaf.PublicKey)
	}
	st, err := os.Stat(filepath.Join(dir, siptls.KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("key mode %v, want 0600", st.Mode().Perm())
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		t.Errorf("data directory holds %d files, want 2 (no temporary files left)", len(ents))
	}

	// Reused after.
	again, err := siptls.Certificate(siptls.WithSelfSigned(dir, "node.example.test", "127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	if again.Leaf.SerialNumber.Cmp(leaf.SerialNumber) != 0 {
		t.Error("a second start made a new certificate instead of reusing the first")
	}
	// A name it does not cover: made anew.
	other, err := siptls.Certificate(siptls.WithSelfSigned(dir, "other.example.test"))
	if err != nil {
		t.Fatal(err)
	}
	if other.Leaf.SerialNumber.Cmp(leaf.SerialNumber) == 0 || other.Leaf.DNSNames[0] != "other.example.test" {
		t.Error("a new name kept the old certificate")
	}
	// Near its end: made anew.
	later := func() time.Time { return time.Now().Add(350 * 24 * time.Hour) }
	renewed, err := siptls.Certificate(siptls.WithSelfSigned(dir, "other.example.test"), siptls.WithClock(later))
	if err != nil {
		t.Fatal(err)
	}
	if renewed.Leaf.SerialNumber.Cmp(other.Leaf.SerialNumber) == 0 {
		t.Error("a certificate about to expire was kept")
	}
}

func TestSelfSignedDamaged(t *testing.T) {
	dir := t.TempDir()
	if _, err := siptls.Certificate(siptls.WithSelfSigned(dir, "a.test")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, siptls.KeyFile), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := siptls.Certificate(siptls.WithSelfSigned(dir, "a.test"))
	if !errors.Is(err, siptls.ErrCertificate) || !strings.Contains(err.Error(), siptls.KeyFile) {
		t.Errorf("damaged key: %v, want ErrCertificate naming the file (a damaged key is not replaced silently)", err)
	}
}

func TestFiles(t *testing.T) {
	dir := t.TempDir()
	made, err := siptls.Certificate(siptls.WithSelfSigned(dir, "files.test"))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := siptls.Certificate(siptls.WithFiles(filepath.Join(dir, siptls.CertFile), filepath.Join(dir, siptls.KeyFile)))
	if err != nil {
		t.Fatal(err)
	}
	if cert.Leaf.SerialNumber.Cmp(made.Leaf.SerialNumber) != 0 {
		t.Error("files: another certificate")
	}
	// A key that is not the certificate's.
	dir2 := t.TempDir()
	if _, err := siptls.Certificate(siptls.WithSelfSigned(dir2, "other.test")); err != nil {
		t.Fatal(err)
	}
	_, err = siptls.Certificate(siptls.WithFiles(filepath.Join(dir, siptls.CertFile), filepath.Join(dir2, siptls.KeyFile)))
	if !errors.Is(err, siptls.ErrCertificate) {
		t.Errorf("mismatched key: %v", err)
	}
	_, err = siptls.Certificate(siptls.WithFiles("/nonexistent.pem", "/nonexistent.key"))
	if !errors.Is(err, siptls.ErrCertificate) || !strings.Contains(err.Error(), "/nonexistent.pem") {
		t.Errorf("missing files: %v", err)
	}
}

func TestCertificateOptions(t *testing.T) {
	for name, opts := range map[string][]siptls.CertOption{
		"none":     nil,
		"both":     {siptls.WithFiles("a", "b"), siptls.WithSelfSigned(t.TempDir(), "x.test")},
		"no key":   {siptls.WithFiles("a", "")},
		"no names": {siptls.WithSelfSigned(t.TempDir())},
		"bad name": {siptls.WithSelfSigned(t.TempDir(), "not a name")},
		"no dir":   {siptls.WithSelfSigned("", "x.test")},
		"validity": {siptls.WithSelfSigned(t.TempDir(), "x.test"), siptls.WithValidity(time.Hour, 2*time.Hour)},
	} {
		if _, err := siptls.Certificate(opts...); !errors.Is(err, siptls.ErrConfig) {
			t.Errorf("%s: %v, want ErrConfig", name, err)
		}
	}
	if _, err := siptls.ParseClientAuth("sometimes"); !errors.Is(err, siptls.ErrConfig) {
		t.Errorf("ParseClientAuth: %v", err)
	}
	if _, err := siptls.Server(tls.Certificate{}, siptls.WithClientAuth(siptls.ClientAuthRequire, "")); !errors.Is(err, siptls.ErrConfig) {
		t.Errorf("require without CA: %v", err)
	}
}

// pki makes a server certificate and a client certificate, each self-signed
// in its own directory, and returns them with their certificate files (each
// is its own CA).
type party struct {
	cert   tls.Certificate
	caFile string
}

func newParty(t *testing.T, names ...string) party {
	t.Helper()
	dir := t.TempDir()
	cert, err := siptls.Certificate(siptls.WithSelfSigned(dir, names...))
	if err != nil {
		t.Fatal(err)
	}
	return party{cert, filepath.Join(dir, siptls.CertFile)}
}

// handshake runs a TLS handshake over loopback and returns the client's and
// the server's errors.
func handshake(t *testing.T, server, client *tls.Config) (clientErr, serverErr error) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", server)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		err = c.(*tls.Conn).Handshake()
		if err == nil {
			_, err = c.Write([]byte("x")) // the client reads this after its own checks
		}
		done <- err
	}()
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", ln.Addr().String(), client)
	if err == nil {
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		_, err = c.Read(make([]byte, 1))
		c.Close()
	}
	return err, <-done
}

func TestHandshake(t *testing.T) {
	srv := newParty(t, "sip.example.test", "127.0.0.1")
	cli := newParty(t, "client.example.test")
	stranger := newParty(t, "stranger.example.test")

	plain, err := siptls.Server(srv.cert)
	if err != nil {
		t.Fatal(err)
	}
	require, err := siptls.Server(srv.cert, siptls.WithClientAuth(siptls.ClientAuthRequire, cli.caFile))
	if err != nil {
		t.Fatal(err)
	}
	request, err := siptls.Server(srv.cert, siptls.WithClientAuth(siptls.ClientAuthRequest, cli.caFile))
	if err != nil {
		t.Fatal(err)
	}
	client := func(name string, opts ...siptls.ClientOption) *tls.Config {
		c, err := siptls.Client(name, append([]siptls.ClientOption{siptls.WithRootCAFile(srv.caFile)}, opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	for _, tc := range []struct {
		name         string
		server       *tls.Config
		client       *tls.Config
		clientOK     bool
		serverOK     bool
		clientErrHas string
	}{
		{"domain", plain, client("sip.example.test"), true, true, ""},
		{"wrong domain", plain, client("evil.example.test"), false, false, "evil.example.test"},
		{"system roots do not know a self-signed cert", plain, mustClient(t, "sip.example.test"), false, false, "unknown authority"},
		{"identities: dialled by IP, checked against the SIP domain", plain,
			client("", siptls.WithIdentities(func(sn string) []string { return []string{"sip.example.test"} })), true, true, ""},
		{"identities: the wrong domain", plain,
			client("", siptls.WithIdentities(func(sn string) []string { return []string{"evil.example.test"} })), false, false, "names none"},
		{"require: no client certificate", require, client("sip.example.test"), false, false, ""},
		{"require: a certificate from another CA", require, forceCert(client("sip.example.test"), stranger.cert), false, false, ""},
		{"require: the right certificate", require, client("sip.example.test", siptls.WithClientCertificate(cli.cert)), true, true, ""},
		{"request: none given", request, client("sip.example.test"), true, true, ""},
		{"request: a bad one given", request, forceCert(client("sip.example.test"), stranger.cert), false, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.client.ServerName == "" {
				tc.client = tc.client.Clone()
				tc.client.ServerName = "127.0.0.1" // what sipgo sets when it dials an address
			}
			cerr, serr := handshake(t, tc.server, tc.client)
			if (cerr == nil) != tc.clientOK || (serr == nil) != tc.serverOK {
				t.Fatalf("client error %v, server error %v; want client ok %v, server ok %v", cerr, serr, tc.clientOK, tc.serverOK)
			}
			if tc.clientErrHas != "" && !strings.Contains(cerr.Error(), tc.clientErrHas) {
				t.Errorf("client error %v, want it to name %q", cerr, tc.clientErrHas)
			}
		})
	}
}

// forceCert makes the client send cert even where the server's list of
// acceptable CAs does not name its issuer (Go's client would send none).
func forceCert(c *tls.Config, cert tls.Certificate) *tls.Config {
	c = c.Clone()
	c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
	return c
}

func mustClient(t *testing.T, name string) *tls.Config {
	c, err := siptls.Client(name)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCAFileErrors(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(bad, pem.EncodeToMemory(&pem.Block{Type: "NOTHING", Bytes: []byte{1}}), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := siptls.Client("x", siptls.WithRootCAFile(bad)); !errors.Is(err, siptls.ErrCertificate) {
		t.Errorf("no PEM certificate: %v", err)
	}
	if _, err := siptls.Client("x", siptls.WithRootCAFile("/nonexistent")); !errors.Is(err, siptls.ErrConfig) {
		t.Errorf("missing CA file: %v", err)
	}
}
