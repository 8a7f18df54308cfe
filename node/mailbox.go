package node

import (
	"context"
	"fmt"
	"time"

	"github.com/hiersip/hiersip/domains"
	"github.com/hiersip/hiersip/mailbox"
	"github.com/hiersip/hiersip/sipbridge"
)

// MailboxConfig configures messages that wait (issue 19): a MESSAGE to a user
// of the domain with no live device is sealed to the user's mailbox key and
// stored in the domain overlay, and delivered when a device of the user
// registers (package mailbox).
type MailboxConfig struct {
	// Disable turns messages that wait off: such a MESSAGE gets 480.
	Disable bool
	// Retention is how long a message this node stores waits (zero:
	// mailbox.DefaultRetention, 7 days; at most domains.MaxMailRetention,
	// 30 days). Daemon key: mailbox.retention.
	Retention time.Duration
}

func (c MailboxConfig) validate() error {
	if c.Retention < 0 || c.Retention > domains.MaxMailRetention {
		return &ConfigError{"mailbox.retention", fmt.Errorf("%v is outside (0, %v]", c.Retention, domains.MaxMailRetention)}
	}
	return nil
}

// messageBox is the node's sipbridge.MessageBox: its mailbox, with the users
// file's keys to open and own the mailboxes of its users.
type messageBox struct {
	n  *Node
	mb *mailbox.Mailbox
}

var _ sipbridge.MessageBox = (*messageBox)(nil)

// recipient is aor as a mailbox recipient of this node.
func (m *messageBox) recipient(aor domains.AOR) (mailbox.Recipient, error) {
	r := mailbox.Recipient{AOR: aor, UserKey: m.n.users.key(aor.User)}
	cert, err := m.n.enroll.certFor(aor)
	r.Cert = cert
	return r, err
}

// Keep stores msg; the recipient's owner key, when this node's users file
// knows it, must be the one of the mailbox key found.
func (m *messageBox) Keep(ctx context.Context, msg mailbox.Message) error {
	if aor, err := domains.ParseAOR(msg.To); err == nil {
		if k := m.n.users.key(aor.User); k != nil {
			msg.Owner = k.GetPublic()
		}
	}
	_, err := m.mb.Store(ctx, msg)
	return err
}

// Waiting publishes aor's mailbox key when it is missing or ageing (a device of
// the user registers here: messages may wait for it from now on) and, when a
// key was live before, takes the waiting messages.
func (m *messageBox) Waiting(ctx context.Context, aor domains.AOR) ([]mailbox.Delivered, func(context.Context) error, error) {
	r, err := m.recipient(aor)
	if err != nil {
		return nil, nil, err
	}
	mayWait, err := m.mb.Registered(ctx, r)
	if err != nil {
		m.n.log.Debug("publishing the mailbox key failed", "aor", aor, "err", err)
	}
	if !mayWait {
		return nil, nil, nil // no mailbox key of the user was live: nothing can wait
	}
	b, err := m.mb.Fetch(ctx, r)
	if err != nil {
		return nil, nil, err
	}
	return b.Messages, func(ctx context.Context) error { return m.mb.Ack(ctx, r, b) }, nil
}

// startMailbox creates the node's mailbox and returns the bridge option
// that uses it (none when disabled).
func (n *Node) startMailbox() ([]sipbridge.Option, error) {
	c := n.cfg.Mailbox
	if c.Disable {
		return nil, nil
	}
	opts := []mailbox.Option{mailbox.WithClock(n.cfg.Clock), mailbox.WithLogger(n.log)}
	if c.Retention > 0 {
		opts = append(opts, mailbox.WithRetention(c.Retention))
	}
	mb, err := mailbox.New(n.domain.DHT(), n.cfg.Domain, n.key, opts...)
	if err != nil {
		return nil, fmt.Errorf("node: mailbox: %w", err)
	}
	n.mailbox = mb
	return []sipbridge.Option{sipbridge.WithMessageBox(&messageBox{n: n, mb: mb})}, nil
}

// republishMail re-stores the queues this node wrote (kad-dht forgets
// values 48 h after they were stored).
func (n *Node) republishMail() {
	if n.mailbox == nil {
		return
	}
	ctx, cancel := context.WithTimeout(n.ctx, time.Minute)
	defer cancel()
	if _, err := n.mailbox.Republish(ctx); err != nil && n.ctx.Err() == nil {
		n.log.Warn("re-store waiting messages failed", "err", err)
	}
}
