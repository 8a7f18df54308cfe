package election

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"
)

func TestEncodeDecodeRoundTrip(t *testing.T) {
	ids := testIDs(t, 4, 3)
	msgs := []Message{
		{Type: MsgAnnounce, From: ids[0], Epoch: 7, Utility: 2.25,
			Roster: []Member{{ids[0], 2.25}, {ids[1], 1.5}}, Spares: []Member{{ids[2], 1}}, Floor: 1},
		{Type: MsgHello, From: ids[1], Epoch: 7, Utility: 1.5},
		{Type: MsgHello, From: ids[1], Epoch: 7, Utility: 1.5, Leaving: true},
		{Type: MsgHelloAck, From: ids[0], Epoch: 1, Roster: []Member{{ids[0], 0}}, Floor: NotEligible},
		{Type: MsgBid, From: ids[3], Utility: 0.123456789},
		{Type: MsgHandoff, From: ids[0], Epoch: 8, Roster: []Member{{ids[1], 1.5}}, Endorse: bytes.Repeat([]byte{7}, 64), Seq: 1 << 50},
		{Type: MsgHello, From: ids[1], Epoch: MaxEpoch, Utility: 1.5, Seq: 12, Cert: []byte("cert"), Endorse: []byte{1, 2}},
	}
	for _, m := range msgs {
		b, err := Encode(m)
		if err != nil {
			t.Fatalf("encode %v: %v", m.Type, err)
		}
		got, err := Decode(b)
		if err != nil {
			t.Fatalf("decode %v: %v (%s)", m.Type, err, b)
		}
		b2, _ := Encode(got)
		if !bytes.Equal(b, b2) || got.From != m.From || got.Utility != m.Utility || len(got.Roster) != len(m.Roster) {
			t.Fatalf("round trip changed %v: %s vs %s", m.Type, b, b2)
		}
	}
	// A full roster of MaxListed members fits in MaxMessageSize.
	big := Message{Type: MsgAnnounce, From: ids[0], Epoch: MaxEpoch, Utility: math.Nextafter(MaxUtility, 0),
		Seq: math.MaxUint64, Cert: bytes.Repeat([]byte{1}, 1024)}
	for _, id := range testIDs(t, MaxListed, 4) {
		big.Roster = append(big.Roster, Member{id, math.Nextafter(MaxUtility, 0)})
	}
	if b, err := Encode(big); err != nil {
		t.Fatalf("full roster: %v", err)
	} else {
		t.Logf("full roster: %d bytes", len(b))
	}
}

func TestDecodeRejects(t *testing.T) {
	ids := testIDs(t, 2, 5)
	from := ids[0].String()
	cases := map[string]string{
		"empty":         ``,
		"not json":      `hello`,
		"array":         `[1,2]`,
		"no version":    `{"t":2,"f":"` + from + `"}`,
		"bad version":   `{"v":9,"t":2,"f":"` + from + `"}`,
		"unknown type":  `{"v":1,"t":99,"f":"` + from + `"}`,
		"type zero":     `{"v":1,"t":0,"f":"` + from + `"}`,
		"bad from":      `{"v":1,"t":2,"f":"nope"}`,
		"no from":       `{"v":1,"t":2}`,
		"unknown field": `{"v":1,"t":2,"f":"` + from + `","x":1}`,
		"trailing":      `{"v":1,"t":2,"f":"` + from + `"}{}`,
		"utility nan":   `{"v":1,"t":2,"f":"` + from + `","u":"NaN"}`,
		"utility big":   `{"v":1,"t":2,"f":"` + from + `","u":1e300}`,
		"utility neg":   `{"v":1,"t":2,"f":"` + from + `","u":-5}`,
		"empty roster":  `{"v":1,"t":1,"f":"` + from + `","e":1}`,
		"epoch zero":    `{"v":1,"t":1,"f":"` + from + `","r":[{"i":"` + from + `","u":1}]}`,
		"dup member":    `{"v":1,"t":1,"f":"` + from + `","e":1,"r":[{"i":"` + from + `","u":1}],"s":[{"i":"` + from + `","u":1}]}`,
		"hello roster":  `{"v":1,"t":2,"f":"` + from + `","r":[{"i":"` + from + `","u":1}]}`,
		"neg member":    `{"v":1,"t":1,"f":"` + from + `","e":1,"r":[{"i":"` + from + `","u":-1}]}`,
		"bad member":    `{"v":1,"t":1,"f":"` + from + `","e":1,"r":[{"i":"x","u":1}]}`,
		"epoch too big": `{"v":1,"t":2,"f":"` + from + `","e":18446744073709551616}`,
		"epoch 2^64-1":  `{"v":1,"t":1,"f":"` + from + `","e":18446744073709551615,"r":[{"i":"` + from + `","u":1}]}`,
		"epoch 2^53+1":  `{"v":1,"t":1,"f":"` + from + `","e":9007199254740993,"r":[{"i":"` + from + `","u":1}]}`,
		"bid endorses":  `{"v":1,"t":4,"f":"` + from + `","n":"AAAA"}`,
	}
	for name, in := range cases {
		if _, err := Decode([]byte(in)); !errors.Is(err, ErrBadMessage) {
			t.Errorf("%s: err %v, want ErrBadMessage", name, err)
		}
	}
	huge := []byte(`{"v":1,"t":2,"f":"` + from + `","pad":"` + strings.Repeat("x", MaxMessageSize) + `"}`)
	if _, err := Decode(huge); !errors.Is(err, ErrMessageTooLarge) {
		t.Errorf("oversized: %v", err)
	}
	var many strings.Builder
	many.WriteString(`{"v":1,"t":1,"f":"` + from + `","e":1,"r":[`)
	for i := 0; i <= MaxListed; i++ {
		if i > 0 {
			many.WriteString(",")
		}
		many.WriteString(`{"i":"` + from + `","u":1}`)
	}
	many.WriteString(`]}`)
	if _, err := Decode([]byte(many.String())); err == nil {
		t.Error("too many members accepted")
	}
	if _, err := Encode(Message{Type: MsgHello}); !errors.Is(err, ErrBadMessage) {
		t.Errorf("encode without sender: %v", err)
	}
}

func FuzzDecode(f *testing.F) {
	ids := testIDs(f, 2, 6)
	for _, m := range []Message{
		{Type: MsgAnnounce, From: ids[0], Epoch: 3, Roster: []Member{{ids[0], 2}, {ids[1], 1}}},
		{Type: MsgBid, From: ids[1], Utility: 1.5},
		{Type: MsgHandoff, From: ids[0], Epoch: MaxEpoch, Roster: []Member{{ids[1], 1}}, Seq: 5, Endorse: []byte{1}},
		{Type: MsgHello, From: ids[0], Epoch: 2, Cert: []byte("c"), Seq: 9},
	} {
		b, _ := Encode(m)
		f.Add(b)
	}
	f.Add([]byte(`{"v":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Decode(b)
		if err != nil {
			return
		}
		// Anything accepted re-encodes and is accepted again, and a core
		// takes it without panicking.
		b2, err := Encode(m)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if _, err := Decode(b2); err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		e, _ := New(ids[1], Config{})
		e.Tick(simEpoch)
		if err := e.Step(m); err != nil {
			t.Fatalf("step: %v", err)
		}
		e.Tick(simEpoch.Add(10 * DefaultHelloInterval))
		e.Ready()
	})
}
