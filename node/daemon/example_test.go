package daemon_test

import (
	"fmt"
	"log"
	"log/slog"

	"github.com/hiersip/hiersip/node/daemon"
	"github.com/spf13/pflag"
)

// The daemon's configuration: defaults, a YAML file, HIERSIP_ variables and
// flags, mapped onto a node.Config; a bad setting is named by its key.
func ExampleLoad() {
	fs := pflag.NewFlagSet("node", pflag.ContinueOnError)
	daemon.AddFlags(fs)
	if err := fs.Parse([]string{"--domain", "example", "--sip-udp", "127.0.0.1:5070", "--bootstrap-mdns=false"}); err != nil {
		log.Fatal(err)
	}
	dc, err := daemon.Load("", fs) // "": no file
	if err != nil {
		log.Fatal(err)
	}
	dc.Logger = slog.New(slog.DiscardHandler)
	cfg, err := dc.NodeConfig()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(cfg.Domain, cfg.SIP.UDP, cfg.SIP.TCP, cfg.Bootstrap.DisableMDNS, dc.Admin.Listen)

	dc.SIP.UDP = "127.0.0.1:x"
	fmt.Println(dc.Validate())
	// Output:
	// example 127.0.0.1:5070 127.0.0.1:5060 true 127.0.0.1:8080
	// config: sip.udp: "127.0.0.1:x": invalid port
}
