package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/hiersip/hiersip/node"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/spf13/cobra"
)

// idInfo is what hiersip id prints.
type idInfo struct {
	PeerID  string   `json:"peer_id"`
	Domain  string   `json:"domain,omitempty"`
	DataDir string   `json:"data_dir"`
	Running bool     `json:"running"`
	Addrs   []string `json:"addrs"`
}

func newIDCmd() *cobra.Command {
	var (
		nf          nodeFlags
		create, raw bool
		quiet       bool
		statusWait  = 5 * time.Second
	)
	cmd := &cobra.Command{
		Use:   "id",
		Short: "Print the node's peer ID and addresses, without starting it",
		Long: `Print the peer ID of the node's identity key (identity.key in its data
directory) and its addresses: those of the running node when one runs with
this data directory, else the configured listen_addrs (ports 0 are chosen at
start). Other nodes list these addresses in bootstrap.peers, and a domain
authority names the peer ID in the certificates it issues. With --init, a
missing identity key is created, so that a node's peer ID is known before its
first start.

` + findNodeHelp,
		Example: `  hiersip id
  hiersip id -c /etc/hiersip/hiersip.yaml --quiet
  hiersip id --data-dir ./n1 --init`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := nf.locate()
			if err != nil {
				return err
			}
			if r.dataDir == "" {
				return errors.New("no data directory: a node without one has a new identity at each start")
			}
			key, err := node.LoadIdentity(r.dataDir)
			if errors.Is(err, fs.ErrNotExist) && create {
				key, err = node.LoadOrCreateIdentity(r.dataDir)
				if err == nil {
					fmt.Fprintln(cmd.ErrOrStderr(), "hiersip: created the identity key", r.dataDir+"/"+node.IdentityFile)
				}
			}
			if errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("no identity key in %s: start the node once (hiersip node) or create it with hiersip id --init", r.dataDir)
			}
			if err != nil {
				return err
			}
			id, err := peer.IDFromPrivateKey(key)
			if err != nil {
				return err
			}
			info := idInfo{PeerID: id.String(), Domain: r.cfg.Domain, DataDir: r.dataDir, Addrs: []string{}}
			if quiet {
				fmt.Fprintln(cmd.OutOrStdout(), info.PeerID)
				return nil
			}
			if r.admin != "" {
				ctx, cancel := context.WithTimeout(cmd.Context(), statusWait)
				s, _, err := r.status(ctx)
				cancel()
				if err == nil && s.PeerID == info.PeerID {
					info.Running, info.Domain = true, s.Domain
					for _, a := range s.Addrs {
						info.Addrs = append(info.Addrs, a+"/p2p/"+info.PeerID)
					}
				}
			}
			if !info.Running {
				for _, a := range r.cfg.ListenAddrs {
					info.Addrs = append(info.Addrs, a+"/p2p/"+info.PeerID)
				}
			}
			out := cmd.OutOrStdout()
			if raw {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(info)
			}
			fmt.Fprintf(out, "peer ID   %s\n", info.PeerID)
			if info.Domain != "" {
				fmt.Fprintf(out, "domain    %s\n", info.Domain)
			}
			fmt.Fprintf(out, "data dir  %s\n", info.DataDir)
			if info.Running {
				fmt.Fprintf(out, "addresses of the running node (%s):\n", r.admin)
			} else {
				fmt.Fprintln(out, "listen addresses (configured; the node is not running, ports 0 are chosen at start):")
			}
			for _, a := range info.Addrs {
				fmt.Fprintf(out, "  %s\n", a)
			}
			return nil
		},
	}
	nf.add(cmd)
	cmd.Flags().BoolVar(&create, "init", false, "create the identity key when the data directory has none")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print the peer ID only")
	cmd.Flags().BoolVar(&raw, "json", false, "print JSON")
	return cmd
}
