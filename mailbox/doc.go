// Package mailbox keeps messages for users with no live device in their
// domain overlay, and hands them to the user's node when a device
// registers (issue 19, preview). It works over any routing.ValueStore — the
// domain overlay's kad-dht (domains.Overlay.DHT()) whose validator knows
// the mailbox records (domains.MailValidator under domains.NSMail,
// domains.MailboxKeyValidator under domains.NSMailboxKey).
//
// # Who stores what
//
// A node serving a user publishes the user's mailbox key (Publish): an
// HPKE public key (RFC 9180: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
// ChaCha20-Poly1305, from the standard library's crypto/hpke) derived from
// the user key — every node holding the user key derives the same key pair,
// nothing new goes into the users file — and signed with the user key. A
// user without a user key gets a mailbox its node owns: derived from and
// signed with the node's key, readable by that node only (if the node dies,
// its waiting messages lapse unread).
//
// The node that takes a MESSAGE for a user with no live device (the user's
// domain proxy for a call from another domain, or any node of the domain)
// calls Store: it seals the message (sender, recipient, Call-ID, CSeq,
// Content-Type, body, date) to the mailbox key, with the recipient and the
// message ID bound into the HPKE info, and appends it to its queue for that
// sender in the recipient's mailbox: one of domains.MailSlots slots per
// user, tried in an order of the sender's own (domains.SlotOf), so a new
// sender finds any free slot; a sender holds at most
// domains.MaxSenderQueues queues per user. The queue is a record the
// storing node signs; it
// holds at most domains.MaxMailPerQueue messages of at most
// domains.MaxSealedMessage bytes, each waiting the retention time
// (WithRetention, default 7 days, at most domains.MaxMailRetention). The
// sender gets 202 Accepted once the queue is stored; a full mailbox or
// sender queue, or a recipient without a mailbox key, is an error the proxy
// turns into 480. The writer re-stores its queues (Republish; kad-dht
// forgets a value 48 h after it was stored) and the recipient's mailbox key
// with them, until they are acknowledged or lapse.
//
// When a device of the user registers, its node calls Fetch: it reads all
// slots, opens the messages sealed to the user's key, drops those it has
// delivered already (a message stored twice, through two proxies, has one
// ID: a hash of sender, Call-ID and CSeq) and returns them oldest first
// (storing node's time, then ID). Once the node has taken them it calls
// Ack: an ack per queue version read, signed with the user's key, replaces
// the queue at every storer; messages stored after the fetch are in newer
// versions and stay.
//
// # Who can read and remove
//
// Only holders of the recipient's owner key: the user key (every node
// whose users file has the user's line with its key) or, for a user without
// one, the serving node's key. Storers hold ciphertext. Only the queue's
// writer replaces a queue (a newer version), and only the recipient's key
// acknowledges it; a replay of an acknowledged queue is refused while its
// ack lives (as long as the queue would have), and the recipient's node
// does not deliver an ID twice (bounded memory of recent IDs).
//
// # What a storing node sees
//
// The recipient's AOR (in clear, to validate the record), which slot, a
// tag per sender (a hash of sender and recipient AORs: it tells that two
// messages came from one sender, and confirms a guessed sender, not who
// it is), the storing node's peer ID, how many messages wait, their sizes,
// when they were taken and until when they wait, and when the recipient
// took them (the ack). Not the sender's AOR, the content type, the body or
// the Call-ID: those are sealed.
//
// # Bounds and what an attacker can do
//
// Per user: MailSlots queues of MaxMailPerQueue messages (160 messages,
// at most 48 KiB per queue record); per sender and user: MaxSenderQueues
// queues (30 messages); per message 3 KiB sealed (2 KiB of body). Storers
// enforce the per-user, per-queue and per-message bounds with the
// validator; the writer enforces the per-sender bound (a storer cannot
// count across slots, and a sender's name is only as true as the node that
// took the message: a writer that lies can fill every slot, see below). Any member of an open domain can write queues, so a flood from
// many made-up senders fills a user's mailbox (further senders get 480
// until the user's node takes the messages and frees the slots): the
// bound holds, the mailbox is denied, nothing is lost silently. A member
// can also occupy slots with queues naming a key other than the user's,
// which the user cannot acknowledge: they lapse with their retention. A
// mailbox key is first come, first served per owner while it lives, like a
// binding: an outsider can claim the mailbox of a name that has none, and
// a proxy that knows the user's owner key (from the device set or binding)
// passes it as Message.Owner and refuses a mailbox key of another owner.
package mailbox
