package sipbridge_test

import (
	"fmt"
	"strings"
	"time"

	"github.com/hiersip/hiersip/sipbridge"
)

// A users-file line with both hashes, as `hiersip users add` writes it: the node challenges
// with SHA-256 and MD5; the password is not stored.
func ExampleUsersLine() {
	line := sipbridge.UsersLine("alice", "pastry", "s3cret")
	f := strings.Split(line, ":")
	hashes := strings.Split(f[2], ",")
	fmt.Println(f[0], f[1], len(hashes[0]), len(hashes[1]))
	users, err := sipbridge.ReadUsers(strings.NewReader("# users of pastry\n" + line + "\n"))
	fmt.Println(users != nil, err)
	// Output:
	// alice pastry 32 64
	// true <nil>
}

// The options a node on a LAN uses to serve the phones of 192.168.1.0/24 without users,
// with tighter connection limits and old phones that know MD5 only.
func ExampleWithTrustedNetworks() {
	nets, err := sipbridge.ParseTrustedNetworks([]string{"192.168.1.0/24", "10.0.0.7"})
	fmt.Println(nets, err)
	opts := []sipbridge.Option{
		sipbridge.WithTrustedNetworks(nets...),
		sipbridge.WithConnLimits(sipbridge.ConnLimits{MaxTCPPerSource: 16, TCPIdleTimeout: 2 * time.Minute}),
		sipbridge.WithMaxContacts(4),
		sipbridge.WithDigestAlgorithms("MD5"),
	}
	for _, o := range opts {
		if err := sipbridge.CheckOption(o); err != nil {
			fmt.Println(err)
		}
	}
	fmt.Println(sipbridge.CheckOption(sipbridge.WithMaxContacts(40)))
	// Output:
	// [192.168.1.0/24 10.0.0.7/32] <nil>
	// sipbridge: invalid option: max contacts 40: want 1 to 16
}
