package enroll

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/hiersip/hiersip/domains"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Errors of the enroll package.
var (
	ErrExists = errors.New("enroll: file exists")
	ErrBadKey = errors.New("enroll: invalid authority key")
)

// InitAuthority creates a new Ed25519 authority key in keyFile (mode 0600)
// and its public key, base64 as the config's enrollment.authority wants it,
// in keyFile+".pub". It refuses to overwrite an existing key file.
func InitAuthority(keyFile string) (crypto.PubKey, error) {
	if _, err := os.Stat(keyFile); err == nil {
		return nil, fmt.Errorf("%w: %s", ErrExists, keyFile)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	k, pub, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return nil, err
	}
	data, err := crypto.MarshalPrivateKey(k)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(keyFile, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("enroll: %w", err)
	}
	_, err = f.Write(data)
	if err = errors.Join(err, f.Close()); err != nil {
		return nil, fmt.Errorf("enroll: %w", err)
	}
	s, err := EncodePublicKey(pub)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(keyFile+".pub", []byte(s+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("enroll: %w", err)
	}
	return pub, nil
}

// LoadAuthority reads an authority key file written by InitAuthority.
func LoadAuthority(keyFile string) (crypto.PrivKey, error) {
	data, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("enroll: %w", err)
	}
	k, err := crypto.UnmarshalPrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrBadKey, keyFile, err)
	}
	if _, ok := k.(*crypto.Ed25519PrivateKey); !ok {
		return nil, fmt.Errorf("%w: %s is not an Ed25519 key", ErrBadKey, keyFile)
	}
	return k, nil
}

// EncodePublicKey returns the base64 text form of an authority public key.
func EncodePublicKey(pub crypto.PubKey) (string, error) {
	data, err := crypto.MarshalPublicKey(pub)
	if err != nil {
		return "", err
	}
	return crypto.ConfigEncodeKey(data), nil
}

// ParsePublicKey parses an authority public key: the base64 text of
// EncodePublicKey, or the name of a file holding it (such as the .pub file
// of InitAuthority).
func ParsePublicKey(s string) (crypto.PubKey, error) {
	s = strings.TrimSpace(s)
	if data, err := os.ReadFile(s); err == nil {
		s = strings.TrimSpace(string(data))
	}
	raw, err := crypto.ConfigDecodeKey(s)
	if err != nil {
		return nil, fmt.Errorf("%w: neither base64 nor a readable file: %v", ErrBadKey, err)
	}
	pub, err := crypto.UnmarshalPublicKey(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadKey, err)
	}
	if _, ok := pub.(*crypto.Ed25519PublicKey); !ok {
		return nil, fmt.Errorf("%w: not an Ed25519 key", ErrBadKey)
	}
	return pub, nil
}

// IssueRequest describes a certificate to issue.
type IssueRequest struct {
	Domain  string
	Subject string  // an AOR or a user glob: sip:bob@bupt.pastry, *@bupt.pastry
	Peer    peer.ID // the node that may register the subject
	Valid   time.Duration
	Serial  uint64    // 0: a random serial
	Now     time.Time // zero: time.Now()
}

// Issue signs a certificate with the authority key and returns it as PEM,
// with the certificate itself.
func Issue(key crypto.PrivKey, r IssueRequest) ([]byte, *domains.Certificate, error) {
	sub, err := domains.ParseSubject(r.Subject)
	if err != nil {
		return nil, nil, err
	}
	if r.Now.IsZero() {
		r.Now = time.Now()
	}
	if r.Serial == 0 {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, nil, err
		}
		r.Serial = binary.BigEndian.Uint64(b[:])>>1 | 1
	}
	c := &domains.Certificate{Domain: r.Domain, Subject: sub, Peer: r.Peer, Serial: r.Serial,
		NotBefore: r.Now.Add(-domains.MaxClockSkew), NotAfter: r.Now.Add(r.Valid)}
	data, err := c.Seal(key)
	if err != nil {
		return nil, nil, err
	}
	return domains.EncodePEM(domains.PEMCertificate, data), c, nil
}

// ReadCertificate reads a certificate file (PEM or raw) and checks that the
// authority signed it.
func ReadCertificate(file string, authority crypto.PubKey) (*domains.Certificate, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("enroll: %w", err)
	}
	if data, err = domains.DecodePEM(data, domains.PEMCertificate); err != nil {
		return nil, err
	}
	return domains.OpenCertificate(data, authority)
}

// Revoke adds serials to the revocation list in listFile (created when it
// does not exist) of domain, signs the new list with the authority key,
// writes it back as PEM and returns it.
func Revoke(key crypto.PrivKey, listFile, domain string, serials []uint64) ([]byte, *domains.RevocationList, error) {
	list := domains.RevocationList{Domain: domain}
	data, err := os.ReadFile(listFile)
	switch {
	case err == nil:
		raw, err := domains.DecodePEM(data, domains.PEMRevocationList)
		if err != nil {
			return nil, nil, fmt.Errorf("enroll: %s: %w", listFile, err)
		}
		l, err := domains.OpenRevocationList(raw, key.GetPublic())
		if err != nil {
			return nil, nil, fmt.Errorf("enroll: %s: %w", listFile, err)
		}
		if l.Domain != domain {
			return nil, nil, fmt.Errorf("enroll: %s is the list of %s, not %s", listFile, l.Domain, domain)
		}
		list = *l
	case !errors.Is(err, fs.ErrNotExist):
		return nil, nil, fmt.Errorf("enroll: %w", err)
	}
	list = list.Revoke(time.Now(), serials...)
	sealed, err := list.Seal(key)
	if err != nil {
		return nil, nil, err
	}
	out := domains.EncodePEM(domains.PEMRevocationList, sealed)
	tmp := listFile + ".tmp"
	if err := os.WriteFile(tmp, out, 0o644); err != nil {
		return nil, nil, fmt.Errorf("enroll: %w", err)
	}
	if err := os.Rename(tmp, listFile); err != nil {
		return nil, nil, fmt.Errorf("enroll: %w", err)
	}
	return out, &list, nil
}

// Publish stores a sealed revocation list (PEM or raw) of domain in the
// domain overlay, through a short-lived libp2p host that joins the overlay
// by the given peers (multiaddrs with /p2p/) and leaves when done. The
// members' validators accept it because the authority signed it; no node
// needs to be configured with it.
func Publish(ctx context.Context, domain string, authority crypto.PubKey, list []byte, peers []string) error {
	data, err := domains.DecodePEM(list, domains.PEMRevocationList)
	if err != nil {
		return err
	}
	e, err := domains.NewEnrollment(domain, authority)
	if err != nil {
		return err
	}
	if _, err := e.AddRevocationList(data); err != nil {
		return err
	}
	var infos []peer.AddrInfo
	for _, s := range peers {
		ai, err := peer.AddrInfoFromString(s)
		if err != nil {
			return fmt.Errorf("enroll: peer %q: %w", s, err)
		}
		infos = append(infos, *ai)
	}
	if len(infos) == 0 {
		return errors.New("enroll: no peer of the domain to publish through")
	}
	h, err := libp2p.New(libp2p.NoListenAddrs)
	if err != nil {
		return fmt.Errorf("enroll: libp2p host: %w", err)
	}
	defer h.Close()
	ov, err := domains.NewDomainOverlay(h, domain, domains.WithEnrollment(e))
	if err != nil {
		return err
	}
	defer ov.Close()
	var errs []error
	for _, ai := range infos {
		if err := h.Connect(ctx, ai); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == len(infos) {
		return fmt.Errorf("enroll: no peer reachable: %w", errors.Join(errs...))
	}
	for !ov.Joined() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("enroll: joining %s: %w", domain, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	return ov.PutRevocationList(ctx, nil)
}
