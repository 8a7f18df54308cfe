package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
	"github.com/pion/rtp"

	"github.com/hiersip/hiersip/integration/netns"
	"github.com/hiersip/hiersip/integration/softphone"
	"github.com/hiersip/hiersip/integration/testenv"
)

// Media across NATs (README "Media"): two baresip phones, each on a NATed LAN of the NAT
// test bed in a namespace of its own (pa 10.1.0.20 next to a1, pb 10.2.0.20 next to b1),
// unable to reach each other, call each other with baresip's ausine tone. The LAN nodes
// listen for SIP on their LAN addresses; each phone's node anchors the media, and the two
// nodes carry it over libp2p. tcpdump on each phone's interface counts the RTP each phone
// sent and received (matched by SSRC).

// rtpPacket is an RTP packet seen on a phone's interface.
type rtpPacket struct {
	at       time.Time
	src, dst netip.Addr
	ssrc     uint32
	seq      uint16
}

// capture is a tcpdump of a namespace's eth0.
type capture struct {
	proc *netns.Proc
	file string
}

func startCapture(t *testing.T, b *natBed, ns *netns.Namespace, label string) *capture {
	t.Helper()
	testenv.RequireBinary(t, "tcpdump")
	c := &capture{file: filepath.Join(b.n.LogDir(), label+".pcap")}
	c.proc = ns.Start(label, "tcpdump", "-i", "eth0", "-n", "-U", "-w", c.file, "udp")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.proc.WaitFor(ctx, func(l string) bool { return strings.Contains(l, "listening on") }); err != nil {
		t.Fatalf("tcpdump in %s: %v", ns.Name, err)
	}
	return c
}

// packets stops the capture and returns its RTP packets (RTCP left out).
func (c *capture) packets(t *testing.T) []rtpPacket {
	t.Helper()
	_ = c.proc.Stop()
	f, err := os.Open(c.file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var out []rtpPacket
	src := gopacket.NewPacketSource(r, r.LinkType())
	for p := range src.Packets() {
		ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		udp, _ := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
		if ip == nil || udp == nil || len(udp.Payload) < 12 {
			continue
		}
		var h rtp.Header
		if _, err := h.Unmarshal(udp.Payload); err != nil || h.Version != 2 || (udp.Payload[1] >= 192 && udp.Payload[1] <= 223) {
			continue
		}
		s, _ := netip.AddrFromSlice(ip.SrcIP.To4())
		d, _ := netip.AddrFromSlice(ip.DstIP.To4())
		out = append(out, rtpPacket{at: p.Metadata().Timestamp, src: s, dst: d, ssrc: h.SSRC, seq: h.SequenceNumber})
	}
	return out
}

// flow is one direction of a call's RTP: distinct packets (SSRC, sequence number) sent
// and received, and duplicates received.
type flow struct {
	sent, received, dups int
	gap                  time.Duration // longest time between two packets received
}

func (f flow) ratio() float64 {
	if f.sent == 0 {
		return 0
	}
	return float64(f.received) / float64(f.sent)
}

func (f flow) String() string {
	return fmt.Sprintf("%d of %d (%.1f %%, %d duplicates), longest gap %v", f.received, f.sent, 100*f.ratio(), f.dups, f.gap.Round(time.Millisecond))
}

// flowOf counts the RTP phone from sent (in its capture) and phone to received (in its own).
func flowOf(atFrom, atTo []rtpPacket, from, to netip.Addr) flow {
	var f flow
	type key struct {
		ssrc uint32
		seq  uint16
	}
	sent, got := map[key]bool{}, map[key]bool{}
	ssrcs := map[uint32]bool{}
	for _, p := range atFrom {
		if p.src == from {
			sent[key{p.ssrc, p.seq}] = true
			ssrcs[p.ssrc] = true
		}
	}
	f.sent = len(sent)
	var last time.Time
	for _, p := range atTo {
		if p.dst != to || !ssrcs[p.ssrc] {
			continue
		}
		k := key{p.ssrc, p.seq}
		if got[k] {
			f.dups++
			continue
		}
		got[k] = true
		if sent[k] {
			f.received++
		}
		if !last.IsZero() {
			f.gap = max(f.gap, p.at.Sub(last))
		}
		last = p.at
	}
	return f
}

// phones are the two phone namespaces of the test bed.
type phones struct {
	pa, pb *netns.Namespace
	ipA    netip.Addr
	ipB    netip.Addr
}

func addPhones(b *natBed) phones {
	ph := phones{pa: b.n.Namespace("pa"), pb: b.n.Namespace("pb"),
		ipA: netip.MustParseAddr("10.1.0.20"), ipB: netip.MustParseAddr("10.2.0.20")}
	b.lans["r1"].Attach(ph.pa, "eth0", "10.1.0.20/24")
	ph.pa.AddRoute("default", "10.1.0.1")
	b.lans["r2"].Attach(ph.pb, "eth0", "10.2.0.20/24")
	ph.pb.AddRoute("default", "10.2.0.1")
	return ph
}

// mediaRun is what baresipCall saw.
type mediaRun struct {
	ab, ba flow     // phone A → phone B, B → A
	paths  []string // the caller node's media path over the call ("relayed", "direct")
	cuts   int      // relayed connections a1 → LAN 2 closed during the call
}

// registered waits until nd serves aor.
func registered(t *testing.T, nd *hsNode, aor string) {
	t.Helper()
	eventually(t, 30*time.Second, aor+" registered at "+nd.label, func() error {
		s, err := nd.status()
		if err != nil {
			return err
		}
		for _, r := range s.Registrations {
			if r.AOR == aor {
				return nil
			}
		}
		return fmt.Errorf("not among %d registrations", len(s.Registrations))
	})
}

// baresipCall places a call from baresip at a1 (LAN 1) to baresip at b1 (LAN 2), holds it,
// hangs up and counts the RTP each phone sent and received.
func baresipCall(t *testing.T, b *natBed, lan lanNodes, ph phones, hold time.Duration) mediaRun {
	t.Helper()
	tag := fmt.Sprintf("g%d", b.gen)
	capA, capB := startCapture(t, b, ph.pa, "pa-"+tag+".tcpdump"), startCapture(t, b, ph.pb, "pb-"+tag+".tcpdump")
	in := func(ns *netns.Namespace) func(string, ...string) *exec.Cmd {
		return func(name string, args ...string) *exec.Cmd { return ns.Command(context.Background(), name, args...) }
	}
	carol, dave := "sip:carol@"+lan.db, "sip:dave@"+lan.da
	phoneB := softphone.Start(t, softphone.Account{AOR: carol, Node: lan.b1.sip},
		softphone.Options{Listen: net.JoinHostPort(ph.ipB.String(), "5062"), RTPPorts: "40000-40009", Command: in(ph.pb), Dial: ph.pb.Dial})
	phoneA := softphone.Start(t, softphone.Account{AOR: dave, Node: lan.a1.sip},
		softphone.Options{Listen: net.JoinHostPort(ph.ipA.String(), "5062"), RTPPorts: "40000-40009", Command: in(ph.pa), Dial: ph.pa.Dial})
	registered(t, lan.b1, carol)
	registered(t, lan.a1, dave)
	mark := len(lan.a1.proc.Lines())
	ctx, cancel := context.WithTimeout(context.Background(), hold+60*time.Second)
	defer cancel()
	if err := phoneA.Dial(ctx, carol); err != nil {
		t.Fatal(err)
	}
	for _, p := range []*softphone.Baresip{phoneA, phoneB} {
		if err := p.WaitFor(ctx, "Call established"); err != nil {
			t.Fatal(err)
		}
	}
	var run mediaRun
	end := time.Now().Add(hold)
	for time.Now().Before(end) {
		if s, err := lan.a1.status(); err == nil && len(s.Media) > 0 {
			if p := s.Media[0].Path; len(run.paths) == 0 || run.paths[len(run.paths)-1] != p {
				run.paths = append(run.paths, p)
			}
		}
		time.Sleep(min(500*time.Millisecond, time.Until(end)))
	}
	if err := phoneA.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	for _, p := range []*softphone.Baresip{phoneA, phoneB} {
		if err := p.WaitFor(ctx, "terminated (duration"); err != nil {
			t.Fatal(err)
		}
	}
	// Nothing is left of the call at either node.
	for _, nd := range []*hsNode{lan.a1, lan.b1} {
		eventually(t, 10*time.Second, nd.label+"'s media sessions closed", func() error {
			s, err := nd.status()
			if err != nil {
				return err
			}
			if len(s.Media) > 0 {
				return fmt.Errorf("%d sessions: %+v", len(s.Media), s.Media)
			}
			return nil
		})
	}
	phoneA.Stop()
	phoneB.Stop()
	atA, atB := capA.packets(t), capB.packets(t)
	run.ab = flowOf(atA, atB, ph.ipA, ph.ipB)
	run.ba = flowOf(atB, atA, ph.ipB, ph.ipA)
	for _, l := range lan.a1.proc.Lines()[mark:] {
		var r logRecord
		if json.Unmarshal([]byte(l), &r) == nil && r.Msg == "connection closed" && r.Path == "relayed" && (r.Remote == lan.b1.id || r.Remote == lan.b2.id) {
			run.cuts++
		}
	}
	return run
}

// TestMediaNAT: baresip ↔ baresip across two NATs, with hole punching, through the relay
// only, and for 60 s through circuits the relay cuts every 4 s.
func TestMediaNAT(t *testing.T) {
	testenv.RequireBinary(t, "baresip")
	testenv.RequireBinary(t, "tcpdump")
	var b *natBed
	t.Cleanup(func() {
		if b != nil {
			checkNothingLeft(t, b.n.Prefix(), b.bin)
		}
	})
	b = newNATBed(t)
	b.lanSIP = true
	b.known = append(b.known, "epsilon", "zeta")
	ph := addPhones(b)
	b.startPublic(0)

	check := func(t *testing.T, what string, r mediaRun, min float64) {
		t.Helper()
		t.Logf("RESULT %s: A→B %v; B→A %v; media path of the caller's node %v; relayed connections cut %d",
			what, r.ab, r.ba, r.paths, r.cuts)
		if r.ab.sent < 100 || r.ba.sent < 100 {
			t.Errorf("the phones sent too little: %v, %v", r.ab, r.ba)
		}
		for _, f := range []flow{r.ab, r.ba} {
			if f.ratio() < min {
				t.Errorf("%.1f %% of the RTP arrived, want at least %.0f %%", 100*f.ratio(), 100*min)
			}
		}
	}
	lan := b.startLANs("alpha", "beta", true)
	t.Run("HolePunching", func(t *testing.T) {
		disconnectAcross(t, lan)
		r := baresipCall(t, b, lan, ph, 10*time.Second)
		check(t, "hole punching", r, 0.95)
		if !slices.Contains(r.paths, "direct") {
			t.Errorf("the media never went direct: %v", r.paths)
		}
	})
	lan.stop()
	lan = b.startLANs("gamma", "delta", false)
	t.Run("RelayOnly", func(t *testing.T) {
		disconnectAcross(t, lan)
		r := baresipCall(t, b, lan, ph, 10*time.Second)
		check(t, "relay only", r, 0.95)
		if slices.Contains(r.paths, "direct") || !slices.Contains(r.paths, "relayed") {
			t.Errorf("media paths %v with hole punching off", r.paths)
		}
	})
	lan.stop()
	b.p.stop()
	const relayLimit = 4 * time.Second
	b.startPublic(relayLimit)
	lan = b.startLANs("epsilon", "zeta", false)
	t.Run("RelayCuts", func(t *testing.T) {
		r := baresipCall(t, b, lan, ph, 60*time.Second)
		check(t, fmt.Sprintf("60 s through circuits cut every %v", relayLimit), r, 0.90)
		if r.cuts == 0 {
			t.Error("no relayed connection was cut during the call")
		}
	})
	lan.stop()
	b.p.stop()
}
