package siptls_test

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/hiersip/hiersip/siptls"
)

// TestSipgoTLSAndWSS is the wiring sipbridge will use: sipgo serves SIP over
// TLS and over secure WebSocket on listeners wrapped with siptls.Server, and
// a sipgo client verifies the server with siptls.Client, dialling the
// address and checking the SIP domain's name (WithIdentities). An OPTIONS
// over each gets its 200.
func TestSipgoTLSAndWSS(t *testing.T) {
	srv := newParty(t, "sip.example.test")
	serverConf, err := siptls.Server(srv.cert)
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.DiscardHandler)

	ua, err := sipgo.NewUA(sipgo.WithUserAgent("siptls-test-server"))
	if err != nil {
		t.Fatal(err)
	}
	server, err := sipgo.NewServer(ua, sipgo.WithServerLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	server.OnOptions(func(req *sip.Request, tx sip.ServerTransaction) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	})
	var wg sync.WaitGroup
	var listeners []net.Listener
	listen := func(serve func(net.Listener) error) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		// sipgo's Close does not close a listener it was handed: the
		// owner does (sipbridge must too).
		listeners = append(listeners, ln)
		tl := tls.NewListener(ln, serverConf)
		wg.Go(func() { _ = serve(tl) })
		return ln.Addr().String()
	}
	tlsAddr := listen(server.ServeTLS)
	wssAddr := listen(server.ServeWSS)

	clientConf, err := siptls.Client("", siptls.WithRootCAFile(srv.caFile),
		siptls.WithIdentities(func(string) []string { return []string{"sip.example.test"} }))
	if err != nil {
		t.Fatal(err)
	}
	cua, err := sipgo.NewUA(sipgo.WithUserAgent("siptls-test-client"), sipgo.WithUserAgenTLSConfig(clientConf))
	if err != nil {
		t.Fatal(err)
	}
	client, err := sipgo.NewClient(cua, sipgo.WithClientLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		client.Close()
		cua.Close()
		server.Close()
		ua.Close()
		for _, ln := range listeners {
			ln.Close()
		}
		wg.Wait()
	})

	for _, tc := range []struct{ transport, addr string }{{"TLS", tlsAddr}, {"WSS", wssAddr}} {
		t.Run(tc.transport, func(t *testing.T) {
			host, port, _ := net.SplitHostPort(tc.addr)
			req := sip.NewRequest(sip.OPTIONS, sip.Uri{Scheme: "sips", Host: "sip.example.test"})
			req.SetTransport(tc.transport)
			req.SetDestination(net.JoinHostPort(host, port))
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			res, err := client.Do(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			if res.StatusCode != 200 {
				t.Fatalf("OPTIONS over %s: %d", tc.transport, res.StatusCode)
			}
		})
	}
}
