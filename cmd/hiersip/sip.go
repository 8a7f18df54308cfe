package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/spf13/cobra"

	"github.com/hiersip/hiersip/presence"
	"github.com/hiersip/hiersip/sipua"
)

// uaFlags are the flags of the commands that act as a SIP user agent.
type uaFlags struct {
	nodeFlags
	node, listen, as, user, password, logLevel string
	expires                                    time.Duration
}

func (f *uaFlags) add(cmd *cobra.Command) {
	f.nodeFlags.add(cmd)
	cmd.Flags().StringVar(&f.node, "node", "", "UDP address (host:port) of the node's SIP bridge, its registrar and outbound proxy, on this host or another (default: the SIP address of the node found as for hiersip status)")
	cmd.Flags().StringVar(&f.listen, "listen", "", "local UDP address of this user agent (default: port 0 on the address this host reaches --node from)")
	cmd.Flags().StringVar(&f.as, "as", "", "the AOR to register and act as, e.g. sip:bob@bupt.pastry (required)")
	cmd.Flags().StringVar(&f.user, "user", "", "digest user name, when the node authenticates (default: the AOR's user)")
	cmd.Flags().StringVar(&f.password, "password", "", "digest password, when the node authenticates")
	cmd.Flags().DurationVar(&f.timeout, "timeout", 30*time.Second, "bound of each SIP transaction")
	cmd.Flags().DurationVar(&f.expires, "expires", 10*time.Minute, "registration interval requested")
	cmd.Flags().StringVar(&f.logLevel, "log-level", "warn", "log level: debug, info, warn or error")
	_ = cmd.MarkFlagRequired("as")
}

// nodeAddr is --node, else the SIP address of the node found as for
// hiersip status.
func (f *uaFlags) nodeAddr(ctx context.Context) (string, error) {
	if f.node != "" {
		return f.node, nil
	}
	r, err := f.locate()
	if err != nil {
		return "", err
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return r.sipAddr(sctx)
}

// localAddrFor is the local UDP address to talk to the node at addr from: port 0 on
// the address of the interface the route to the node leaves from (loopback for a
// node on this host), as a kernel's source address selection picks it. It returns
// the node's address resolved too.
func localAddrFor(addr string) (local, remote string, err error) {
	c, err := net.Dial("udp", addr) // connects nothing: picks the route and source
	if err != nil {
		return "", "", fmt.Errorf("node %s: %w", addr, err)
	}
	defer c.Close()
	la, ra := c.LocalAddr().(*net.UDPAddr), c.RemoteAddr().(*net.UDPAddr)
	ip := la.IP
	if ip.IsLinkLocalUnicast() && la.Zone != "" {
		return net.JoinHostPort(ip.String()+"%"+la.Zone, "0"), ra.String(), nil
	}
	return net.JoinHostPort(ip.String(), "0"), ra.String(), nil
}

// start creates the UA and registers it with the node.
func (f *uaFlags) start(ctx context.Context, out io.Writer, opts ...sipua.UAOption) (*sipua.UA, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.logLevel)); err != nil {
		return nil, err
	}
	addr, err := f.nodeAddr(ctx)
	if err != nil {
		return nil, err
	}
	listen, addr, err := localAddrFor(addr)
	if err != nil {
		return nil, err
	}
	if f.listen != "" {
		listen = f.listen
	}
	opts = append(opts, sipua.WithUALogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))),
		sipua.WithUAExpires(f.expires), sipua.WithUAListen(listen))
	if f.password != "" {
		opts = append(opts, sipua.WithUACredentials(f.user, f.password))
	}
	ua, err := sipua.NewUA(f.as, addr, opts...)
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	res, err := ua.Register(rctx, f.expires)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("register %s at %s: %w", f.as, addr, err), ua.Close())
	}
	contact := ua.Contact()
	from := net.JoinHostPort(strings.Trim(contact.Host, "[]"), strconv.Itoa(contact.Port))
	fmt.Fprintf(out, "registered %s at %s from %s: %d %s\n", f.as, addr, from, res.StatusCode, res.Reason)
	return ua, nil
}

// stop unregisters the UA's contact and closes it.
// run returns a command's RunE that starts the user agent (registered with
// the node, with the options of opts, called once the flags are parsed)
// under a context that ends on SIGINT or SIGTERM, runs do with it and stops
// it.
func (f *uaFlags) run(do func(ctx context.Context, out io.Writer, ua *sipua.UA, args []string) error, opts ...func() sipua.UAOption) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		out := cmd.OutOrStdout()
		ctx, cancel := signalContext(cmd.Context())
		defer cancel()
		var uo []sipua.UAOption
		for _, o := range opts {
			uo = append(uo, o())
		}
		ua, err := f.start(ctx, out, uo...)
		if err != nil {
			return err
		}
		defer f.stop(ua)
		return do(ctx, out, ua, args)
	}
}

func (f *uaFlags) stop(ua *sipua.UA) {
	ctx, cancel := context.WithTimeout(context.Background(), f.timeout)
	defer cancel()
	_, _ = ua.Unregister(ctx)
	_ = ua.Close()
}

func signalContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
}

// printMedia prints the RTP the call's UA sent and received, per m-line, e.g.
// "media audio: sent 250, received 249 RTP packets (longest gap 21ms) to 127.0.0.1:10000".
func printMedia(out io.Writer, c *sipua.Call) {
	for _, m := range c.Media() {
		fmt.Fprintf(out, "media %s: sent %d, received %d RTP packets (longest gap %s) to %s, %s\n",
			m.Kind, m.Sent, m.Received, m.MaxGap.Round(time.Millisecond), m.Remote, m.Direction)
	}
}

func printLadder(out io.Writer, ua *sipua.UA) {
	fmt.Fprintln(out, "ladder:")
	for _, e := range ua.Ladder() {
		fmt.Fprintln(out, " ", e)
	}
}

func newCallCmd() *cobra.Command {
	var (
		f        uaFlags
		duration time.Duration
	)
	cmd := &cobra.Command{
		Use:   "call TARGET",
		Short: "Register with a node, call TARGET, hang up after --duration",
		Long: `Act as the SIP user agent --as: register with the node at --node, INVITE
TARGET through it, print the final response and the setup time (INVITE to
2xx), keep the call up for --duration (or until the callee hangs up or a
signal), send BYE, and print the ladder of the messages sent and received.
Exits 1 if the call fails.

` + uaNodeHelp,
		Example: `  hiersip call --as sip:bob@bupt.pastry sip:alice@pku.can
  hiersip call --node 192.0.2.10:5060 --as sip:bob@bupt.pastry --password secret sip:alice@pku.can`,
		Args: cobra.ExactArgs(1),
		RunE: f.run(func(ctx context.Context, out io.Writer, ua *sipua.UA, args []string) error {
			cctx, ccancel := context.WithTimeout(ctx, f.timeout)
			t0 := time.Now()
			call, err := ua.Call(cctx, args[0])
			setup := time.Since(t0)
			ccancel()
			var failed *sipua.ErrCallFailed
			if errors.As(err, &failed) {
				fmt.Fprintf(out, "final response: %d %s\n", failed.Response.StatusCode, failed.Response.Reason)
				printLadder(out, ua)
				return err
			}
			if err != nil {
				printLadder(out, ua)
				return fmt.Errorf("call %s: %w", args[0], err)
			}
			if n := len(call.Responses); n > 0 {
				fmt.Fprintf(out, "final response: %d %s\n", call.Responses[n-1].StatusCode, call.Responses[n-1].Reason)
			} else {
				fmt.Fprintln(out, "final response: 200 OK")
			}
			fmt.Fprintf(out, "call set up in %s\n", setup.Round(time.Microsecond))
			t := time.NewTimer(duration)
			defer t.Stop()
			select {
			case <-t.C:
			case <-call.Done():
				fmt.Fprintln(out, "the callee hung up")
			case <-ctx.Done():
			}
			select {
			case <-call.Done():
			default:
				hctx, hcancel := context.WithTimeout(context.Background(), f.timeout)
				t0 := time.Now()
				err := call.Hangup(hctx)
				hcancel()
				if err != nil {
					printLadder(out, ua)
					return fmt.Errorf("BYE: %w", err)
				}
				fmt.Fprintf(out, "hung up (BYE answered in %s)\n", time.Since(t0).Round(time.Microsecond))
			}
			printMedia(out, call)
			printLadder(out, ua)
			return nil
		}),
	}
	f.add(cmd)
	cmd.Flags().DurationVar(&duration, "duration", 5*time.Second, "how long to keep the call up")
	return cmd
}

func newAnswerCmd() *cobra.Command {
	var (
		f    uaFlags
		ring time.Duration
	)
	cmd := &cobra.Command{
		Use:   "answer",
		Short: "Register with a node and answer calls until interrupted",
		Long: `Act as the SIP user agent --as: register with the node at --node, answer
every incoming call (after ringing for --ring) and print the calls and the
MESSAGEs received, until SIGINT or SIGTERM; then unregister.

` + uaNodeHelp,
		Example: `  hiersip answer --as sip:alice@pku.can
  hiersip answer --node 192.0.2.10:5060 --as sip:alice@pku.can`,
		Args: cobra.NoArgs,
		RunE: f.run(func(ctx context.Context, out io.Writer, ua *sipua.UA, _ []string) error {
			ended := make(chan *sipua.Call)
			refresh := time.NewTicker(max(f.expires/2, time.Second))
			defer refresh.Stop()
			for {
				select {
				case <-ctx.Done():
					fmt.Fprintln(out, "stopping")
					return nil
				case c := <-ua.Incoming():
					fmt.Fprintf(out, "answered call from %s (Call-ID %s)\n", c.Remote, c.CallID)
					go func() {
						select {
						case <-c.Done():
							select {
							case ended <- c:
							case <-ctx.Done():
							}
						case <-ctx.Done():
						}
					}()
				case c := <-ended:
					fmt.Fprintf(out, "call from %s ended (Call-ID %s)\n", c.Remote, c.CallID)
					printMedia(out, c)
				case m := <-ua.Messages():
					fmt.Fprintf(out, "message from %s: %s\n", m.From, m.Body)
				case <-refresh.C:
					rctx, rcancel := context.WithTimeout(ctx, f.timeout)
					if _, err := ua.Register(rctx, f.expires); err != nil && ctx.Err() == nil {
						fmt.Fprintf(os.Stderr, "hiersip: re-register: %v\n", err)
					}
					rcancel()
				}
			}
		}, func() sipua.UAOption { return sipua.WithUAAnswer(sipua.AnswerAuto, ring) }),
	}
	f.add(cmd)
	cmd.Flags().DurationVar(&ring, "ring", 0, "how long to ring before answering")
	return cmd
}

func newMessageCmd() *cobra.Command {
	var f uaFlags
	cmd := &cobra.Command{
		Use:   "message TARGET TEXT",
		Short: "Register with a node and send a SIP MESSAGE",
		Long: `Act as the SIP user agent --as: register with the node at --node, send TEXT
to TARGET in a MESSAGE (answering the node's digest challenge with --password
like REGISTER and INVITE), print the final response and unregister. Exits 1
unless the answer is 2xx.

` + uaNodeHelp,
		Example: `  hiersip message --as sip:bob@bupt.pastry sip:alice@pku.can "hello"
  hiersip message --node 192.0.2.10:5060 --as sip:bob@bupt.pastry --password secret sip:alice@pku.can "hello"`,
		Args: cobra.ExactArgs(2),
		RunE: f.run(func(ctx context.Context, out io.Writer, ua *sipua.UA, args []string) error {
			mctx, mcancel := context.WithTimeout(ctx, f.timeout)
			defer mcancel()
			res, err := ua.Message(mctx, args[0], args[1])
			if err != nil {
				return fmt.Errorf("MESSAGE %s: %w", args[0], err)
			}
			fmt.Fprintf(out, "final response: %d %s\n", res.StatusCode, res.Reason)
			if !res.IsSuccess() {
				return fmt.Errorf("MESSAGE %s: %s", args[0], statusLine(res))
			}
			return nil
		}),
	}
	f.add(cmd)
	return cmd
}

func newWatchCmd() *cobra.Command {
	var (
		f        uaFlags
		event    string
		duration time.Duration
	)
	cmd := &cobra.Command{
		Use:   "watch TARGET",
		Short: "Register with a node, subscribe to TARGET's presence and print each NOTIFY",
		Long: `Act as the SIP user agent --as: register with the node at --node, SUBSCRIBE
to the --event package of TARGET (presence by default; reg and message-summary
only for your own AOR) for --for, and print one line per NOTIFY received, e.g.
"notify active;expires=3599: open (1 tuple)", until the subscription ends,
--for is over or a signal comes; then unregister. Exits 1 unless the SUBSCRIBE
is answered 2xx.

` + uaNodeHelp,
		Example: `  hiersip watch --as sip:bob@bupt.pastry sip:alice@pku.can
  hiersip watch --as sip:alice@pku.can --event message-summary sip:alice@pku.can`,
		Args: cobra.ExactArgs(1),
		RunE: f.run(func(ctx context.Context, out io.Writer, ua *sipua.UA, args []string) error {
			sctx, scancel := context.WithTimeout(ctx, f.timeout)
			res, err := ua.Subscribe(sctx, args[0], event, duration)
			scancel()
			if err != nil {
				return fmt.Errorf("SUBSCRIBE %s: %w", args[0], err)
			}
			fmt.Fprintf(out, "subscribed to %s of %s: %s\n", event, args[0], statusLine(res))
			if !res.IsSuccess() {
				return fmt.Errorf("SUBSCRIBE %s: %s", args[0], statusLine(res))
			}
			t := time.NewTimer(duration)
			defer t.Stop()
			for {
				select {
				case n := <-ua.Notifies():
					fmt.Fprintf(out, "notify %s: %s\n", n.State, presence.Describe(n.ContentType, n.Body))
					if strings.HasPrefix(n.State, "terminated") {
						return nil
					}
				case <-t.C:
					return nil
				case <-ctx.Done():
					fmt.Fprintln(out, "stopping")
					return nil
				}
			}
		}),
	}
	f.add(cmd)
	cmd.Flags().StringVar(&event, "event", "presence", "event package: presence, reg or message-summary")
	cmd.Flags().DurationVar(&duration, "for", time.Hour, "how long to watch (the subscription's Expires; 60s to 24h)")
	return cmd
}

var uaNodeHelp = `--node names the node's SIP UDP address, on this host or another; the user
agent binds port 0 on the local address the route to the node leaves from
(--listen to choose). Without --node the SIP address is that of the running
node found as for hiersip status (--admin, --data-dir, --config, HIERSIP_*).`

func statusLine(res *sip.Response) string { return fmt.Sprintf("%d %s", res.StatusCode, res.Reason) }
