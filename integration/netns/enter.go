package netns

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// Do runs f on an operating-system thread that has entered the namespace, and
// returns what f returns. Sockets f opens belong to the namespace for their
// whole life, wherever they are used afterwards: this is how a test in the
// root namespace talks to a process that listens on a namespace's loopback.
// f must not start goroutines that open sockets (they may run on other threads).
func (ns *Namespace) Do(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		// A thread that could not return to its namespace stays locked: it
		// ends with this goroutine instead of serving others.
		runtime.LockOSThread()
		orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netns: %w", err)
			return
		}
		defer orig.Close()
		target, err := os.Open(filepath.Join("/run/netns", ns.Name))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netns: %w", err)
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netns: enter %s: %w", ns.Name, err)
			return
		}
		ferr := f()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err == nil {
			runtime.UnlockOSThread()
		}
		errc <- ferr
	}()
	return <-errc
}

// Dial opens a connection from inside the namespace (see Do).
func (ns *Namespace) Dial(network, addr string) (net.Conn, error) {
	var c net.Conn
	err := ns.Do(func() error {
		var err error
		c, err = net.Dial(network, addr)
		return err
	})
	return c, err
}

// ListenPacket opens a packet socket inside the namespace (see Do).
func (ns *Namespace) ListenPacket(network, addr string) (net.PacketConn, error) {
	var c net.PacketConn
	err := ns.Do(func() error {
		var err error
		c, err = net.ListenPacket(network, addr)
		return err
	})
	return c, err
}

// Kill sends SIGKILL to the process (a crash: no shutdown handlers run) and
// waits for it to exit.
func (p *Proc) Kill(ctx context.Context) error {
	if err := syscall.Kill(p.Pid(), syscall.SIGKILL); err != nil {
		select {
		case <-p.done:
			return nil
		default:
		}
		return fmt.Errorf("netns: kill %s: %w", p.Label, err)
	}
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("netns: %s did not exit after SIGKILL: %w", p.Label, ctx.Err())
	}
}
