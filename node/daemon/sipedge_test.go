package daemon

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hiersip/hiersip/siptls"
)

// TestDaemonSIPOverTLS: a daemon with sip.tls and sip.wss and no certificate files makes
// a self-signed certificate in its data directory and serves SIP over TLS with it: a
// client that trusts that file gets 200 to an OPTIONS for the node.
func TestDaemonSIPOverTLS(t *testing.T) {
	clearEnv(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	path := filepath.Join(dir, "hiersip.yaml")
	if err := os.WriteFile(path, []byte(fmt.Sprintf(`domain: d
data_dir: %s
listen_addrs: [/ip4/127.0.0.1/tcp/0]
bootstrap: {mdns: false, cache: false}
global: {mdns: false}
sip: {udp: "127.0.0.1:0", tcp: "", tls: "127.0.0.1:0", wss: "127.0.0.1:0", tls_names: [127.0.0.1]}
admin: {listen: ""}
log: {level: info, format: json}
`, data)), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	var logs lockedBuffer
	if c.Logger, c.LogLevel, err = c.NewLoggerLevel(&logs); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, c) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	var tlsAddr, wssAddr string
	eventually(t, 20*time.Second, "the bridge's addresses in the log", func() error {
		for _, l := range strings.Split(logs.String(), "\n") {
			var rec map[string]any
			if json.Unmarshal([]byte(l), &rec) == nil && rec["msg"] == "sip bridge started" {
				tlsAddr, _ = rec["tls"].(string)
				wssAddr, _ = rec["wss"].(string)
				return nil
			}
		}
		return errors.New("not yet")
	})
	if tlsAddr == "" || wssAddr == "" {
		t.Fatalf("tls %q, wss %q", tlsAddr, wssAddr)
	}
	pem, err := os.ReadFile(filepath.Join(data, siptls.CertFile))
	if err != nil {
		t.Fatalf("no self-signed certificate in the data directory: %v", err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	conn, err := tls.Dial("tcp", tlsAddr, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	la := conn.LocalAddr().String()
	req := strings.ReplaceAll(fmt.Sprintf(`OPTIONS sip:%s SIP/2.0
Via: SIP/2.0/TLS %s;branch=z9hG4bKopt1;rport
Max-Forwards: 70
To: <sip:%s>
From: <sip:probe@d>;tag=1
Call-ID: opt1
CSeq: 1 OPTIONS
Content-Length: 0

`, tlsAddr, la, tlsAddr), "\n", "\r\n")
	if _, err := conn.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "SIP/2.0 200") {
		t.Fatalf("answer over TLS: %q %v", line, err)
	}
}

// TestDaemonConfigTLSErrors: the TLS settings' errors name the setting.
func TestDaemonConfigTLSErrors(t *testing.T) {
	for _, bad := range []struct{ env, value, field string }{
		{"HIERSIP_SIP_TLS", "nope", "sip.tls"},
		{"HIERSIP_SIP_WSS", "1.2.3.4:99999", "sip.wss"},
		{"HIERSIP_SIP_PUBLIC_UDP", "nohost", "sip.public.udp"},
		{"HIERSIP_SIP_PUBLIC_TCP", "nohost", "sip.public.tcp"},
		{"HIERSIP_SIP_PUBLIC_TLS", "nohost", "sip.public.tls"},
		{"HIERSIP_SIP_TLS_CERT", "/nonexistent/cert.pem", "sip.tls_key"},
		{"HIERSIP_SIP_TLS_CLIENT_AUTH", "sometimes", "sip.tls_client_auth"},
	} {
		clearEnv(t)
		t.Setenv("HIERSIP_DATA_DIR", t.TempDir())
		if bad.env != "HIERSIP_SIP_TLS" {
			t.Setenv("HIERSIP_SIP_TLS", "127.0.0.1:0")
		}
		t.Setenv(bad.env, bad.value)
		c, err := Load("", daemonFlags(t, "--domain", "pastry"))
		if err != nil {
			t.Fatal(err)
		}
		c.Logger = quiet
		if _, err := c.NodeConfig(); err == nil || !strings.Contains(err.Error(), bad.field) {
			t.Fatalf("%s=%s: %v, want an error naming %s", bad.env, bad.value, err, bad.field)
		}
	}
}

// TestDaemonConfigOutbound: sip.outbound.* build the resolver; their errors name the setting.
func TestDaemonConfigOutbound(t *testing.T) {
	clearEnv(t)
	t.Setenv("HIERSIP_SIP_OUTBOUND_ENABLED", "true")
	t.Setenv("HIERSIP_SIP_OUTBOUND_DNS", "127.0.0.1:5353")
	t.Setenv("HIERSIP_SIP_OUTBOUND_ROUTES", "example.org=sip:gw.example.net")
	c, err := Load("", daemonFlags(t, "--domain", "pastry"))
	if err != nil {
		t.Fatal(err)
	}
	c.Logger = quiet
	if _, err := c.NodeConfig(); err != nil {
		t.Fatal(err)
	}
	if !c.SIP.Outbound.DenyInternal || len(c.SIP.Outbound.Transports) != 2 {
		t.Fatalf("defaults: %+v", c.SIP.Outbound)
	}
	for _, bad := range []struct{ env, value, field string }{
		{"HIERSIP_SIP_OUTBOUND_TRANSPORTS", "sctp", "sip.outbound.transports"},
		{"HIERSIP_SIP_OUTBOUND_ROUTES", "example.org", "sip.outbound.routes"},
		{"HIERSIP_SIP_OUTBOUND_DENY", "bad..suffix", "sip.outbound.deny"},
		{"HIERSIP_SIP_OUTBOUND_TRY_TIMEOUT", "-1s", "sip.outbound.try_timeout"},
		{"HIERSIP_SIP_OUTBOUND_TRANSPORTS", "tls,udp", "sip.outbound.transports"}, // without sip.tls
		{"HIERSIP_SIP_OUTBOUND_TLS_CA_FILE", "/nonexistent.pem", "sip.outbound.tls_ca_file"},
	} {
		clearEnv(t)
		t.Setenv("HIERSIP_SIP_OUTBOUND_ENABLED", "true")
		if bad.env == "HIERSIP_SIP_OUTBOUND_TLS_CA_FILE" { // read only for TLS, which needs sip.tls
			t.Setenv("HIERSIP_SIP_OUTBOUND_TRANSPORTS", "tls,udp")
			t.Setenv("HIERSIP_SIP_TLS", "127.0.0.1:0")
			t.Setenv("HIERSIP_DATA_DIR", t.TempDir())
		}
		t.Setenv(bad.env, bad.value)
		c, err := Load("", daemonFlags(t, "--domain", "pastry"))
		if err != nil {
			if strings.Contains(err.Error(), bad.field) {
				continue
			}
			t.Fatal(err)
		}
		c.Logger = quiet
		if _, err := c.NodeConfig(); err == nil || !strings.Contains(err.Error(), bad.field) {
			t.Fatalf("%s=%s: %v, want an error naming %s", bad.env, bad.value, err, bad.field)
		}
	}
}

// TestDaemonAdminWeb: with admin.web the admin server serves the page at /ui/ (and still
// /status); without it, /ui/ is not found.
func TestDaemonAdminWeb(t *testing.T) {
	for _, on := range []bool{true, false} {
		clearEnv(t)
		dir := t.TempDir()
		path := filepath.Join(dir, "hiersip.yaml")
		if err := os.WriteFile(path, []byte(fmt.Sprintf(`domain: d
data_dir: %s
listen_addrs: [/ip4/127.0.0.1/tcp/0]
bootstrap: {mdns: false, cache: false}
global: {mdns: false}
sip: {udp: "127.0.0.1:0", tcp: ""}
admin: {listen: "127.0.0.1:0", web: %v}
log: {level: info, format: json}
`, filepath.Join(dir, "data"), on)), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := Load(path, nil)
		if err != nil {
			t.Fatal(err)
		}
		var logs lockedBuffer
		if c.Logger, c.LogLevel, err = c.NewLoggerLevel(&logs); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- Run(ctx, c) }()
		var base string
		eventually(t, 20*time.Second, "the admin URL", func() error {
			b, err := os.ReadFile(filepath.Join(dir, "data", AdminURLFile))
			if err != nil {
				return err
			}
			base = strings.TrimSpace(string(b))
			return nil
		})
		get := func(p string) (int, string) {
			res, err := http.Get(base + p)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			body, _ := io.ReadAll(res.Body)
			return res.StatusCode, string(body)
		}
		code, body := get("/ui/")
		switch {
		case on && (code != 200 || !strings.Contains(body, "app.js")):
			t.Errorf("admin.web on: /ui/ %d\n%s", code, body)
		case !on && code != 404:
			t.Errorf("admin.web off: /ui/ %d", code)
		}
		if code, _ := get("/status"); code != 200 {
			t.Errorf("/status %d", code)
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
}
