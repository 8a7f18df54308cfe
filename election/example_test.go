package election_test

import (
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/hiersip/hiersip/election"
)

// Example runs the election core of three nodes on a toy in-memory network
// with fake time: they elect the best node, then it leaves and hands over.
func Example() {
	names := map[peer.ID]string{}
	var nodes []*election.Election
	for i, name := range []string{"alpha", "beta", "gamma"} {
		sk, _, _ := crypto.GenerateEd25519Key(zeroReader{byte(i + 1)})
		id, _ := peer.IDFromPrivateKey(sk)
		names[id] = name
		e, _ := election.New(id, election.Config{})
		// alpha has been online longest, so it has the highest utility.
		e.SetMetrics(election.Metrics{Online: time.Duration(3-i) * time.Hour, CPU: 4})
		nodes = append(nodes, e)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	deliver := func() {
		for again := true; again; {
			again = false
			for _, from := range nodes {
				for _, o := range from.Ready() {
					again = true
					for _, to := range nodes {
						if to != from && (o.To == "" || o.To == to.Status().Self) {
							_ = to.Step(o.Message)
						}
					}
				}
			}
		}
	}
	run := func(d time.Duration) {
		for end := now.Add(d); now.Before(end); now = now.Add(50 * time.Millisecond) {
			for _, e := range nodes {
				e.Tick(now)
			}
			deliver()
		}
	}
	show := func() {
		for _, e := range nodes {
			s := e.Status()
			fmt.Printf("%s: %s, epoch %d, leader %s\n", names[s.Self], s.Role, s.Epoch, names[s.Leader])
		}
	}

	run(5 * time.Second)
	show()
	nodes[0].Leave()
	deliver()
	nodes = nodes[1:]
	fmt.Println("alpha left")
	show()
	// Output:
	// alpha: proxy, epoch 1, leader alpha
	// beta: candidate, epoch 1, leader alpha
	// gamma: candidate, epoch 1, leader alpha
	// alpha left
	// beta: proxy, epoch 2, leader beta
	// gamma: candidate, epoch 2, leader beta
}

// zeroReader is a deterministic key source for the example.
type zeroReader struct{ b byte }

func (z zeroReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = z.b
	}
	return len(p), nil
}

// ExampleUtility shows that reachability dominates the utility.
func ExampleUtility() {
	w := election.DefaultWeights()
	natServer := election.Metrics{Online: 1000 * time.Hour, Bandwidth: 1e9, CPU: 64, Reachability: election.ReachabilityPrivate}
	publicLaptop := election.Metrics{Online: time.Minute, Bandwidth: 1e6, CPU: 2, Reachability: election.ReachabilityPublic}
	fmt.Printf("NATed server %.3f, public laptop %.3f\n", election.Utility(natServer, w), election.Utility(publicLaptop, w))
	fmt.Println(election.Utility(election.Metrics{OptOut: true}, w))
	// Output:
	// NATed server 0.497, public laptop 2.155
	// -1
}
