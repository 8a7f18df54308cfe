package bootstrap

import (
	"fmt"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Source names one of the four bootstrap methods of draft §4.1.
type Source string

// The bootstrap sources. SourceNone means "no connection yet".
const (
	SourceNone   Source = ""
	SourceMDNS   Source = "mdns"   // broadcast on the LAN
	SourceStatic Source = "static" // pre-configured addresses
	SourceCache  Source = "cache"  // addresses cached by a prior run
	SourceWeb    Source = "web"    // a web station
)

// EventKind says what an Event reports.
type EventKind int

// Kinds of bootstrap events.
const (
	// EventFound: a source named a candidate peer (mDNS discovery, a cache
	// entry, a static address, a web-station entry).
	EventFound EventKind = iota + 1
	// EventConnected: a connection to a candidate succeeded.
	EventConnected
	// EventFailed: a connection attempt to a candidate failed; Err says why.
	EventFailed
	// EventJoined: the node has joined (WithJoined) for the first time.
	// Source is the source of the first successful connection (none if
	// joined by an inbound connection only).
	EventJoined
)

func (k EventKind) String() string {
	switch k {
	case EventFound:
		return "found"
	case EventConnected:
		return "connected"
	case EventFailed:
		return "failed"
	case EventJoined:
		return "joined"
	}
	return fmt.Sprintf("EventKind(%d)", int(k))
}

// Event is reported to the hook of WithEventHook, e.g. to count connections
// per source in metrics.
type Event struct {
	Kind   EventKind
	Source Source
	Peer   peer.ID // empty for EventJoined
	Err    error   // for EventFailed
}
