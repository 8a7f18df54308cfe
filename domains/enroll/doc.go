// Package enroll holds the file side of enrolled domains (see package
// domains, "Enrolled domains"): the authority's key file, issuing
// certificates to nodes, revoking them and publishing the revocation list.
// The hiersip command's "authority" subcommands are thin wrappers of it.
//
// # Usage
//
//	pub, _ := enroll.InitAuthority("authority.key") // also writes authority.key.pub
//	key, _ := enroll.LoadAuthority("authority.key")
//	pemCert, cert, _ := enroll.Issue(key, enroll.IssueRequest{
//		Domain: "pastry", Subject: "*@bupt.pastry", Peer: nodeID, Valid: 90 * 24 * time.Hour,
//	})
//	os.WriteFile("node.cert", pemCert, 0o644) // the node's enrollment.certificates
//	list, _, _ := enroll.Revoke(key, "revocations.pem", "pastry", []uint64{cert.Serial})
//	_ = enroll.Publish(ctx, "pastry", pub, list, []string{"/ip4/192.0.2.1/tcp/4001/p2p/12D3KooW..."})
package enroll
