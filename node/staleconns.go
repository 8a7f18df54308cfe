package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"
	msmux "github.com/multiformats/go-multistream"

	"github.com/hiersip/hiersip/internal/p2pnet"
)

// A peer that crashed and restarted (same identity from its data directory, new ports)
// connects again while this node still holds its old connections: a QUIC connection to a
// process that is gone looks open until its idle timeout (30 s), and libp2p prefers it for
// new streams (it has more streams), so requests to the restarted peer vanish until then.
// When a peer opens a new connection while older direct ones exist, the node pings each
// older one on that connection; one that does not answer within staleCheckTimeout is
// closed; a peer that refuses the ping is alive. At most maxStaleChecks
// checks run at once; more are skipped, not queued: a peer that reconnects in a loop can
// make the node send it a few pings, nothing more.

const (
	staleCheckTimeout = 2 * time.Second
	maxStaleChecks    = 8
)

func (n *Node) watchStaleConns() {
	var (
		mu       sync.Mutex
		checking = map[network.Conn]bool{}
		sem      = make(chan struct{}, maxStaleChecks)
	)
	nb := &network.NotifyBundle{
		ConnectedF: func(_ network.Network, c network.Conn) {
			if p2pnet.Relayed(c) {
				return
			}
			for _, old := range n.h.Network().ConnsToPeer(c.RemotePeer()) {
				if old == c || old.IsClosed() || p2pnet.Relayed(old) || !old.Stat().Opened.Before(c.Stat().Opened) {
					continue
				}
				mu.Lock()
				busy := checking[old]
				mu.Unlock()
				if busy || n.ctx.Err() != nil {
					continue
				}
				select {
				case sem <- struct{}{}:
				default:
					continue
				}
				mu.Lock()
				checking[old] = true
				mu.Unlock()
				n.wg.Add(1)
				go func() {
					defer n.wg.Done()
					defer func() {
						mu.Lock()
						delete(checking, old)
						mu.Unlock()
						<-sem
					}()
					n.checkConn(old)
				}()
			}
		},
	}
	n.notifyUntilClose(nb)
}

// checkConn closes c when it does not answer a ping.
func (n *Node) checkConn(c network.Conn) {
	ctx, cancel := context.WithTimeout(n.ctx, staleCheckTimeout)
	defer cancel()
	err := pingConn(ctx, c)
	// Only silence is death: a peer that refuses the ping or resets the stream is alive.
	var te interface{ Timeout() bool }
	timeout := errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) ||
		errors.As(err, &te) && te.Timeout()
	if err == nil || !timeout || n.ctx.Err() != nil || c.IsClosed() {
		return
	}
	n.log.Debug("closing a dead connection (its peer came back on a new one)", "remote", c.RemotePeer(),
		"addr", c.RemoteMultiaddr(), "err", err)
	_ = c.Close()
}

// pingConn runs the libp2p ping protocol once on c itself (not on the host's preferred
// connection to the peer).
func pingConn(ctx context.Context, c network.Conn) error {
	s, err := c.NewStream(ctx)
	if err != nil {
		return err
	}
	defer s.Reset()
	if dl, ok := ctx.Deadline(); ok {
		_ = s.SetDeadline(dl)
	}
	if err := msmux.SelectProtoOrFail(ping.ID, io.ReadWriteCloser(s)); err != nil {
		return err
	}
	_ = s.SetProtocol(ping.ID)
	out := make([]byte, ping.PingSize)
	if _, err := rand.Read(out); err != nil {
		return err
	}
	if _, err := s.Write(out); err != nil {
		return err
	}
	in := make([]byte, ping.PingSize)
	if _, err := io.ReadFull(s, in); err != nil {
		return err
	}
	if !bytes.Equal(in, out) {
		return errors.New("node: ping answer differs")
	}
	return nil
}
