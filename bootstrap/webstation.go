package bootstrap

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// The web station (draft §4.1, method 1) serves the current peers of one
// domain over HTTP(S). Its answer to GET is a JSON object
//
//	{"domain": "pastry",
//	 "peers": ["/ip4/192.0.2.7/tcp/4001/p2p/12D3KooW…",
//	           "/ip4/192.0.2.7/udp/4001/quic-v1/p2p/12D3KooW…"]}
//
// with Content-Type application/json: "domain" is the domain name as
// configured, "peers" a list of multiaddrs, each ending in /p2p/<peer ID>
// (several entries may name the same peer). A client ignores entries it
// cannot parse and rejects an answer for another domain, larger than
// WebStationMaxBody, or slower than its timeout.

// Limits of the web station.
const (
	WebStationMaxBody  = 256 << 10 // bytes of an answer a client reads
	WebStationMaxPeers = 64        // peers a handler lists
	WebStationTimeout  = 10 * time.Second
)

// ErrWebStation wraps every error of FetchWebStation about the answer.
var ErrWebStation = errors.New("bootstrap: bad web station answer")

// WebStationList is the JSON document of a web station.
type WebStationList struct {
	Domain string   `json:"domain"`
	Peers  []string `json:"peers"`
}

// WebStationHandler returns an http.Handler that serves domain's current
// peers, as returned by peers, in the web-station format. It answers GET and
// HEAD, lists at most WebStationMaxPeers peers and never caches.
func WebStationHandler(domain string, peers func() []peer.AddrInfo) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		list := WebStationList{Domain: domain, Peers: []string{}}
		n := 0
		for _, info := range peers() {
			if n == WebStationMaxPeers {
				break
			}
			addrs, err := peer.AddrInfoToP2pAddrs(&info)
			if err != nil || len(addrs) == 0 {
				continue
			}
			n++
			for _, a := range addrs {
				list.Peers = append(list.Peers, a.String())
			}
		}
		body, err := json.Marshal(list)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		if r.Method == http.MethodHead {
			return
		}
		_, _ = w.Write(body)
	})
}

// FetchWebStation asks the web station at url for domain's peers. client nil
// means http.DefaultClient; the request is bounded by WebStationTimeout
// unless ctx ends first, and at most WebStationMaxBody bytes are read.
func FetchWebStation(ctx context.Context, client *http.Client, url, domain string) ([]peer.AddrInfo, error) {
	if client == nil {
		client = http.DefaultClient
	}
	ctx, cancel := context.WithTimeout(ctx, WebStationTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%w: %s: status %s", ErrWebStation, url, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, WebStationMaxBody+1))
	if err != nil {
		return nil, err
	}
	if len(body) > WebStationMaxBody {
		return nil, fmt.Errorf("%w: %s: body larger than %d bytes", ErrWebStation, url, WebStationMaxBody)
	}
	return parseWebStationList(body, url, domain)
}

// parseWebStationList decodes a web station's answer for domain.
func parseWebStationList(body []byte, url, domain string) ([]peer.AddrInfo, error) {
	var list WebStationList
	if err := json.Unmarshal(body, &list); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrWebStation, url, err)
	}
	if list.Domain != domain {
		return nil, fmt.Errorf("%w: %s: lists domain %q, want %q", ErrWebStation, url, list.Domain, domain)
	}
	var addrs []ma.Multiaddr
	for _, s := range list.Peers {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			continue
		}
		if _, err := peer.AddrInfoFromP2pAddr(a); err != nil {
			continue
		}
		addrs = append(addrs, a)
	}
	infos, err := peer.AddrInfosFromP2pAddrs(addrs...)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrWebStation, url, err)
	}
	return infos, nil
}
