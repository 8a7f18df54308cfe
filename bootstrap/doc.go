// Package bootstrap brings a node into an overlay of hiersip (draft §4.1): a
// domain overlay, or the global overlay of proxies. It knows four sources of
// peers, each off unless an option turns it on:
//
//   - mDNS on the LAN (WithMDNS), one DNS-SD service per domain
//     (MDNSServiceName), so that domains on one LAN stay apart;
//   - pre-configured addresses of persistent nodes (WithStatic);
//   - a cache of the peers seen by a prior run, kept in the data directory
//     (WithCacheFile, PeerCache);
//   - web stations: HTTP(S) URLs that list an overlay's peers
//     (WithWebStations; WebStationHandler serves such a list).
//
// A Bootstrapper runs rounds of cache → static → web while the node is
// alone, with exponential backoff (WithBackoff, ±10 % jitter), and dials the
// peers mDNS finds as they are found, retrying each with backoff. It stops
// at the first source of a round that yields a connection. What "joined"
// means is the caller's (WithJoined: for a node, its overlay's routing table
// has a peer); once joined, it only watches. Tried is closed after the first
// round: a node that has not joined by then is alone for now.
//
//	b, err := bootstrap.New(h, "pastry",
//		bootstrap.WithMDNS(),
//		bootstrap.WithStatic(seed),
//		bootstrap.WithCacheFile(filepath.Join(dataDir, "peers-pastry.json")),
//		bootstrap.WithJoined(overlay.Joined), bootstrap.WithPeers(overlay.Peers))
//	if err != nil { ... }
//	err = b.Start(ctx)
//	defer b.Close() // saves the cache
//	<-b.Joined()
//
// # Time
//
// The rounds, the backoffs, the cache saves and the times written into the
// cache follow the bootstrapper's clock (WithClock; package node passes its
// own). Dials and web-station requests are bounded on the system clock: the
// network runs in real time.
//
// # What the sources can do to a node
//
// Every source only names candidate peers; the node dials them and its
// overlay accepts only records its validators accept (package domains), so
// a lying source cannot forge a registration. What a hostile source can do
// is waste dials or keep a node out of its overlay: a web station or a
// tampered cache that lists only an attacker's peers eclipses a node that
// has no other source. Hence the bounds: a web station's answer is read up
// to WebStationMaxBody, within WebStationTimeout, and must name the overlay
// asked for; a cache file larger than PeerCacheMaxSize or of another overlay
// is ignored (and replaced), and it keeps at most PeerCacheMaxPeers peers of
// PeerCacheMaxAddrs addresses each; a round dials at most 8 peers at once;
// an mDNS peer is dialled at most MDNSMaxRetries times per announcement. Use
// https web stations one trusts, and static peers one runs: they are the
// roots an operator chooses.
package bootstrap
