package sipworld

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/hiersip/hiersip/integration/internal/kamcfg"
	"github.com/hiersip/hiersip/integration/testenv"
	"github.com/hiersip/hiersip/sipdns"
	"github.com/hiersip/hiersip/sipdns/dnstest"
	"github.com/hiersip/hiersip/siptls"
)

// Domain is the ordinary SIP domain the world serves.
const Domain = "example.test"

// World is a running ordinary SIP domain: its DNS server and its Kamailios.
type World struct {
	// DNS serves the domain's NAPTR, SRV and A records.
	DNS *dnstest.Server
	// Kamailios are the domain's servers, in SRV priority order (sip1
	// first).
	Kamailios []*Kamailio
}

// Options are what StartWith starts.
type Options struct {
	// Servers is the number of Kamailios (at least 1).
	Servers int
	// WebSocket makes every Kamailio serve SIP over WS and WSS too (RFC
	// 7118), and SIP over TLS on the WSS port, with a self-signed
	// certificate (CertFile) for its name, the domain and 127.0.0.1; the
	// DNS then publishes SIPS+D2T (NAPTR order 5, first) and _sips._tcp SRV
	// records for it. It needs Debian's kamailio-websocket-modules and
	// kamailio-tls-modules.
	WebSocket bool
	// Routes sends requests for other domains to a fixed server: domain →
	// host:port (a hiersip proxy's public address, sip.public.udp), as an
	// operator routes a peer domain.
	Routes map[string]string
}

// Start starts n Kamailios for example.test and a DNS server publishing
// them, and stops all of it at the end of the test. It returns when every
// Kamailio answers OPTIONS.
func Start(t testing.TB, n int) *World {
	t.Helper()
	return StartWith(t, Options{Servers: n})
}

// StartWith is Start with options.
func StartWith(t testing.TB, o Options) *World {
	t.Helper()
	n := o.Servers
	if n < 1 {
		t.Fatalf("sipworld: %d servers", n)
	}
	bin := testenv.RequireBinary(t, "kamailio")
	mods := kamcfg.ModuleDir()
	if mods == "" {
		testenv.Unavailable(t, "Kamailio's module directory (tm.so) not found")
	}
	if o.WebSocket {
		for _, m := range []string{"websocket.so", "tls.so", "xhttp.so"} {
			if _, err := os.Stat(filepath.Join(mods, m)); err != nil {
				testenv.Unavailable(t, "Kamailio module %s (Debian packages kamailio-websocket-modules, kamailio-tls-modules)", m)
			}
		}
	}
	w := &World{}
	dir := t.TempDir()
	records := []string{
		fmt.Sprintf("%s. 300 IN SOA ns.%s. admin.%s. 1 3600 600 86400 30", Domain, Domain, Domain),
		fmt.Sprintf(`%s. 60 IN NAPTR 10 50 "s" "SIP+D2U" "" _sip._udp.%s.`, Domain, Domain),
		fmt.Sprintf(`%s. 60 IN NAPTR 20 50 "s" "SIP+D2T" "" _sip._tcp.%s.`, Domain, Domain),
	}
	for i := range n {
		name := fmt.Sprintf("sip%d.%s", i+1, Domain)
		k, port, ws := startServer(t, bin, mods, name, filepath.Join(dir, name), o)
		w.Kamailios = append(w.Kamailios, k)
		t.Cleanup(func() {
			if k.Running() {
				_ = k.Stop()
			}
			if t.Failed() {
				t.Logf("%s log:\n%s", k, k.Log())
			}
		})
		for _, proto := range []string{"udp", "tcp"} {
			records = append(records, fmt.Sprintf("_sip._%s.%s. 60 IN SRV %d 0 %d %s.", proto, Domain, 10*(i+1), port, name))
		}
		if ws != nil { // Kamailio's TLS port serves SIP over TLS too
			_, tlsPort, _ := strings.Cut(ws.wssAddr, ":")
			records = append(records, fmt.Sprintf("_sips._tcp.%s. 60 IN SRV %d 0 %s %s.", Domain, 10*(i+1), tlsPort, name))
		}
		records = append(records, fmt.Sprintf("%s. 60 IN A 127.0.0.1", name))
	}
	if o.WebSocket {
		records = append(records, fmt.Sprintf(`%s. 60 IN NAPTR 5 50 "s" "SIPS+D2T" "" _sips._tcp.%s.`, Domain, Domain))
	}
	var err error
	if w.DNS, err = dnstest.Start(records...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.DNS.Close() })
	return w
}

// startServer starts Kamailio name on free loopback ports and waits until it answers
// OPTIONS. Ports are found free and then handed to Kamailio, and other tests open
// sockets meanwhile: when one was taken (Kamailio exits, "Address already in use"), it
// starts Kamailio again on other ports.
func startServer(t testing.TB, bin, mods, name, kdir string, o Options) (*Kamailio, int, *wsConfig) {
	t.Helper()
	const attempts = 5
	for attempt := 1; ; attempt++ {
		port, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		var ws *wsConfig
		if o.WebSocket {
			ws = &wsConfig{}
			for _, a := range []*string{&ws.wsAddr, &ws.wssAddr} {
				p, err := freePort()
				if err != nil {
					t.Fatal(err)
				}
				*a = fmt.Sprintf("127.0.0.1:%d", p)
			}
			// the certificate names the SIP domain too: a client checks that (RFC 5922 §4)
			if _, err := siptls.Certificate(siptls.WithSelfSigned(kdir, name, Domain, "127.0.0.1")); err != nil {
				t.Fatal(err)
			}
			ws.certFile, ws.keyFile = filepath.Join(kdir, siptls.CertFile), filepath.Join(kdir, siptls.KeyFile)
		}
		k, err := startKamailio(bin, mods, Domain, name, fmt.Sprintf("127.0.0.1:%d", port), kdir, ws, o.Routes)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		err = waitUp(ctx, k)
		cancel()
		if err == nil {
			return k, port, ws
		}
		if k.Running() {
			_ = k.Stop()
		}
		if attempt == attempts || !strings.Contains(k.Log(), "already in use") {
			t.Fatalf("sipworld: %s: %v\n%s", k, err, k.Log())
		}
		t.Logf("sipworld: %s: a port it was given was taken; starting it again on other ports", k)
	}
}

// Resolver returns a sipdns.Resolver that asks the world's DNS server,
// closed at the end of the test.
func (w *World) Resolver(t testing.TB, opts ...sipdns.Option) *sipdns.Resolver {
	t.Helper()
	r, err := sipdns.New(append([]sipdns.Option{sipdns.WithServers(w.DNS.Addr)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// Probe sends OPTIONS to target over its transport and reports whether a
// final response came back within timeout.
func Probe(ctx context.Context, target sipdns.Target, timeout time.Duration) error {
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("sipworld-probe"))
	if err != nil {
		return err
	}
	defer ua.Close()
	c, err := sipgo.NewClient(ua, sipgo.WithClientLogger(slog.New(slog.DiscardHandler)), sipgo.WithClientHostname("127.0.0.1"))
	if err != nil {
		return err
	}
	defer c.Close()
	req := sip.NewRequest(sip.OPTIONS, sip.Uri{Scheme: "sip", Host: target.Addr.Addr().String(), Port: int(target.Addr.Port())})
	req.SetTransport(map[string]string{"udp": "UDP", "tcp": "TCP", "tls": "TLS"}[target.Transport])
	req.SetDestination(target.Addr.String())
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	res, err := c.Do(ctx, req)
	if err != nil {
		return err
	}
	if res.StatusCode != 200 {
		return fmt.Errorf("sipworld: OPTIONS to %s: %d %s", target, res.StatusCode, res.Reason)
	}
	return nil
}

// FirstUp walks targets in order, as a proxy fails over (RFC 3263 §4.3),
// and returns the first that answers OPTIONS, with the ones that did not.
func FirstUp(ctx context.Context, targets []sipdns.Target, timeout time.Duration) (sipdns.Target, []sipdns.Target, error) {
	var down []sipdns.Target
	for _, t := range targets {
		if err := Probe(ctx, t, timeout); err != nil {
			down = append(down, t)
			continue
		}
		return t, down, nil
	}
	return sipdns.Target{}, down, errors.New("sipworld: no target answered")
}

func waitUp(ctx context.Context, k *Kamailio) error {
	host, port, _ := net.SplitHostPort(k.Addr)
	ap, err := netipAddrPort(host, port)
	if err != nil {
		return err
	}
	for {
		if !k.Running() {
			return errors.New("kamailio exited")
		}
		err := Probe(ctx, sipdns.Target{Transport: "udp", Host: k.Name, Addr: ap}, 300*time.Millisecond)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no answer to OPTIONS: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
