package bootstrap

import (
	"net/http/httptest"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

func FuzzWebStationList(f *testing.F) {
	f.Add([]byte(`{"domain":"pastry","peers":["/ip4/10.0.0.1/tcp/4001/p2p/12D3KooWLeVahpSN4m42zDhGUxLa8vV6iLX6CqzoaKKLGMSujncE"]}`))
	f.Add([]byte(`{"domain":"pastry","peers":["/ip4/10.0.0.1/tcp/4001"]}`))
	f.Add([]byte(`{"domain":"can"}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		infos, err := parseWebStationList(body, "fuzz", "pastry")
		if err != nil {
			return
		}
		// Whatever parses must survive a trip through the handler.
		rec := httptest.NewRecorder()
		WebStationHandler("pastry", func() []peer.AddrInfo { return infos }).
			ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
		again, err := parseWebStationList(rec.Body.Bytes(), "handler", "pastry")
		if err != nil {
			t.Fatalf("handler output does not parse: %v\n%s", err, rec.Body.Bytes())
		}
		if len(infos) <= WebStationMaxPeers && len(again) != len(infos) {
			t.Fatalf("%d peers in, %d out", len(infos), len(again))
		}
	})
}

func TestWebStationHandlerFormat(t *testing.T) {
	id, err := peer.Decode("12D3KooWLeVahpSN4m42zDhGUxLa8vV6iLX6CqzoaKKLGMSujncE")
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	WebStationHandler("pastry", func() []peer.AddrInfo {
		return []peer.AddrInfo{{ID: id, Addrs: []ma.Multiaddr{ma.StringCast("/ip4/192.0.2.7/tcp/4001")}}}
	}).ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	want := `{"domain":"pastry","peers":["/ip4/192.0.2.7/tcp/4001/p2p/12D3KooWLeVahpSN4m42zDhGUxLa8vV6iLX6CqzoaKKLGMSujncE"]}`
	if got := rec.Body.String(); got != want {
		t.Errorf("body %s, want %s", got, want)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
}
