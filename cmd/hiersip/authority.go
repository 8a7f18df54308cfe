package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/hiersip/hiersip/domains/enroll"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/spf13/cobra"
)

func newAuthorityCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "authority",
		Short: "Run the certificate authority of an enrolled domain",
		Long: `Manage the authority of an enrolled domain: its key, the certificates that
let nodes register AORs, and the revocation list.

In an enrolled domain (enrollment.authority set on every node) a node can
register an AOR only with a certificate of the authority that binds the AOR,
or a glob on its user part, to the node's peer ID. Without an authority a
domain is open: names are first come, first served.`,
	}
	cmd.AddCommand(newAuthorityInitCmd(), newAuthorityIssueCmd(), newAuthorityRevokeCmd())
	return cmd
}

func newAuthorityInitCmd() *cobra.Command {
	var keyFile string
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create an authority key",
		Long: `Create a new Ed25519 authority key in --key (mode 0600; an existing file is
never overwritten) and its public key in <key>.pub. The public key, printed
too, is the value of enrollment.authority on every node of the domain.`,
		Example: `  hiersip authority init --key pastry-authority.key`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pub, err := enroll.InitAuthority(keyFile)
			if err != nil {
				return err
			}
			s, err := enroll.EncodePublicKey(pub)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "authority key written to %s\npublic key (enrollment.authority, also in %s.pub):\n%s\n", keyFile, keyFile, s)
			return nil
		},
	}
	cmd.Flags().StringVar(&keyFile, "key", "authority.key", "authority key file to create")
	return cmd
}

func newAuthorityIssueCmd() *cobra.Command {
	var (
		keyFile, domain, aor, peerID, out string
		expires                           time.Duration
		serial                            uint64
	)
	cmd := &cobra.Command{
		Use:   "issue",
		Short: "Issue a certificate binding an AOR (or user glob) to a node",
		Long: `Issue a certificate, signed with the authority key, that lets the node with
peer ID --peer register the AOR --aor in --domain until --expires from now.
--aor may be a glob on the user part: "*@bupt.pastry", "sip:alice-*@pastry".
The certificate (PEM) goes to --out, for the node's enrollment.certificates.
Its serial, printed, is what "hiersip authority revoke" names.`,
		Example: `  hiersip authority issue --key pastry-authority.key --domain pastry \
    --aor sip:bob@bupt.pastry --peer 12D3KooW... --expires 2160h --out bob.cert`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := peer.Decode(peerID)
			if err != nil {
				return fmt.Errorf("--peer: %w", err)
			}
			if expires <= 0 {
				return errors.New("--expires: want a positive duration")
			}
			key, err := enroll.LoadAuthority(keyFile)
			if err != nil {
				return err
			}
			pemCert, c, err := enroll.Issue(key, enroll.IssueRequest{Domain: domain, Subject: aor, Peer: p, Valid: expires, Serial: serial})
			if err != nil {
				return err
			}
			if err := os.WriteFile(out, pemCert, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "certificate %d: %s for %s in %s until %s, written to %s\n",
				c.Serial, c.Subject, c.Peer, c.Domain, c.NotAfter.UTC().Format(time.RFC3339), out)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&keyFile, "key", "authority.key", "authority key file")
	f.StringVar(&domain, "domain", "", "the enrolled domain (required)")
	f.StringVar(&aor, "aor", "", "AOR or user glob the certificate covers (required)")
	f.StringVar(&peerID, "peer", "", "peer ID of the node (required; see hiersip status)")
	f.DurationVar(&expires, "expires", 90*24*time.Hour, "validity from now")
	f.Uint64Var(&serial, "serial", 0, "serial number (0: random)")
	f.StringVar(&out, "out", "node.cert", "certificate file to write")
	for _, r := range []string{"domain", "aor", "peer"} {
		_ = cmd.MarkFlagRequired(r)
	}
	return cmd
}

func newAuthorityRevokeCmd() *cobra.Command {
	var (
		keyFile, domain, list string
		serialArgs, certs     []string
		publish               []string
		timeout               time.Duration
	)
	cmd := &cobra.Command{
		Use:   "revoke",
		Short: "Revoke certificates and publish the revocation list",
		Long: `Add certificates (--serial, or --cert files) to the domain's revocation list
in --list (created if missing), signed with the authority key and with its
sequence number increased.

With --publish the list is stored in the domain overlay through the given
nodes of the domain (multiaddrs with /p2p/): every node's validator learns
it, drops bindings of the revoked certificates and re-stores the list. A
node can also start with it (enrollment.revocation_list).`,
		Example: `  hiersip authority revoke --key pastry-authority.key --domain pastry \
    --serial 4711 --list pastry-revocations.pem \
    --publish /ip4/192.0.2.10/tcp/4001/p2p/12D3KooW...`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			key, err := enroll.LoadAuthority(keyFile)
			if err != nil {
				return err
			}
			var serials []uint64
			for _, a := range serialArgs {
				n, err := strconv.ParseUint(a, 10, 64)
				if err != nil {
					return fmt.Errorf("--serial %q: want an unsigned integer", a)
				}
				serials = append(serials, n)
			}
			for _, f := range certs {
				c, err := enroll.ReadCertificate(f, key.GetPublic())
				if err != nil {
					return fmt.Errorf("--cert %s: %w", f, err)
				}
				serials = append(serials, c.Serial)
			}
			if len(serials) == 0 && len(publish) == 0 {
				return errors.New("nothing to do: give --serial, --cert or --publish")
			}
			data, l, err := enroll.Revoke(key, list, domain, serials)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "revocation list %s of %s: sequence %d, %d serials\n", list, domain, l.Seq, len(l.Serials))
			if len(publish) == 0 {
				return nil
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			if err := enroll.Publish(ctx, domain, key.GetPublic(), data, publish); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "published to the domain overlay")
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&keyFile, "key", "authority.key", "authority key file")
	f.StringVar(&domain, "domain", "", "the enrolled domain (required)")
	f.StringVar(&list, "list", "revocations.pem", "revocation list file to update")
	f.StringSliceVar(&serialArgs, "serial", nil, "serial numbers to revoke")
	f.StringSliceVar(&certs, "cert", nil, "certificate files to revoke")
	f.StringSliceVar(&publish, "publish", nil, "nodes of the domain to publish the list through")
	f.DurationVar(&timeout, "timeout", 30*time.Second, "bound of publishing")
	_ = cmd.MarkFlagRequired("domain")
	return cmd
}
