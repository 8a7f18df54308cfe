package main

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version is set at build time: -ldflags "-X main.version=v1.2.3" (make
// build does, from git describe); else it comes from the module's build
// information (go install …@v1.2.3, or the VCS revision of a checkout).
var version = ""

// exitError carries an exit code other than 1.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func main() {
	root := newRootCmd()
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "hiersip:", err)
		var ee *exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		os.Exit(1)
	}
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "hiersip",
		Short: "Hierarchical peer-to-peer SIP on libp2p",
		Long: `hiersip runs a node of a hierarchical P2P-SIP network (draft-shi-p2psip-hier-arch):
each node is a member of one domain overlay, acts as registrar and outbound
proxy of its local SIP user agents, and the domain's elected proxies connect
the domains in a global overlay.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       versionString(),
	}
	root.SetVersionTemplate("hiersip {{.Version}}\n")
	root.AddCommand(newNodeCmd(), newVersionCmd(), newIDCmd(), newStatusCmd(), newUsersCmd(),
		newCallCmd(), newAnswerCmd(), newMessageCmd(), newWatchCmd(), newDemoCmd(), newDisconnectCmd(), newAuthorityCmd())
	return root
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of hiersip",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintf(cmd.OutOrStdout(), "hiersip %s (%s %s/%s)\n", versionString(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
		},
	}
}

func versionString() string {
	if version != "" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "(unknown)"
	}
	// Go stamps the module version, or a pseudo-version from the checkout's
	// VCS revision ("+dirty" when modified); without VCS information it is
	// "(devel)".
	v := bi.Main.Version
	if v != "" && v != "(devel)" {
		return v
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += " " + s.Value[:12]
		}
		if s.Key == "vcs.modified" && s.Value == "true" {
			v += "+dirty"
		}
	}
	return v
}
