package domains

import (
	"errors"
	"strings"
	"testing"
)

func TestParseAOR(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr error
	}{
		{"sip:bob@bupt.pastry", "sip:bob@bupt.pastry", nil},
		{"sip:alice@pku.can", "sip:alice@pku.can", nil},
		{"SIP:Bob@BUPT.Pastry:5060;transport=udp?subject=x", "sip:Bob@bupt.pastry", nil},
		{`"Bob" <sip:bob@bupt.pastry>;tag=1`, "sip:bob@bupt.pastry", nil},
		{"sips:carol@example.org", "sips:carol@example.org", nil},
		{"", "", ErrEmptyURI},
		{"tel:+15551234", "", ErrScheme},
		{"http://example.org/", "", ErrScheme},
		{"sip:example.org", "", ErrNoUser},
		{"sip:bob@", "", ErrNoHost},
		{"<sip:bob@x", "", ErrBadURI},
		{"sip:" + strings.Repeat("a", 300) + "@x.y", "", ErrURITooLong},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseAOR(tt.in)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("ParseAOR(%q) error = %v, want %v", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseAOR(%q): %v", tt.in, err)
			}
			if got.String() != tt.want {
				t.Fatalf("ParseAOR(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestDomainOf(t *testing.T) {
	known := []string{"pastry", "can", "example.org", "lab.example.org"}
	tests := []struct {
		host, want string
		ok         bool
	}{
		{"bupt.pastry", "pastry", true},
		{"pku.can", "can", true},
		{"pastry", "pastry", true},
		{"x.example.org", "example.org", true},
		{"a.lab.example.org", "lab.example.org", true},
		{"notpastry", "notpastry", false},
		{"bupt.chord", "chord", false},
	}
	for _, tt := range tests {
		got, ok := DomainOf(tt.host, known)
		if got != tt.want || ok != tt.ok {
			t.Errorf("DomainOf(%q) = %q, %v; want %q, %v", tt.host, got, ok, tt.want, tt.ok)
		}
	}
}

func TestDraftExamples(t *testing.T) {
	bob, err := ParseAOR("sip:bob@bupt.pastry")
	if err != nil {
		t.Fatal(err)
	}
	d, _ := DomainOf(bob.Host, nil)
	if d != "pastry" || OverlayURI(d) != "sip:overlay@pastry" {
		t.Fatalf("bob: domain %q overlay %q", d, OverlayURI(d))
	}
	alice, _ := ParseAOR("sip:alice@pku.can")
	if d, _ := DomainOf(alice.Host, nil); d != "can" {
		t.Fatalf("alice: domain %q", d)
	}
	// User-Resource-ID = SHA-256("sip:bob@bupt.pastry"), case of the host folded.
	const want = "b1795c272dd74a9ee2f961deffbde427b95291fe10d996b592a615db1cbd566c"
	if got := bob.ResourceID().String(); got != want {
		t.Fatalf("User-Resource-ID = %s, want %s", got, want)
	}
	upper, _ := ParseAOR("sip:bob@BUPT.PASTRY")
	if bob.ResourceID() != upper.ResourceID() {
		t.Fatal("resource ID depends on host case")
	}
	if OverlayResourceID("pastry") == OverlayResourceID("can") {
		t.Fatal("overlay IDs collide")
	}
}

func TestDomainCandidates(t *testing.T) {
	got := strings.Join(DomainCandidates("a.B.c"), ",")
	if got != "a.b.c,b.c,c" {
		t.Fatalf("DomainCandidates = %s", got)
	}
}

func TestValidateDomain(t *testing.T) {
	for _, ok := range []string{"pastry", "can", "example.org", "a-b.c1"} {
		if err := ValidateDomain(ok); err != nil {
			t.Errorf("ValidateDomain(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "Pastry", "a..b", "-a", "a_b", "global", strings.Repeat("a", 64), "a b"} {
		if err := ValidateDomain(bad); err == nil {
			t.Errorf("ValidateDomain(%q) = nil, want error", bad)
		}
	}
	if err := ValidateDomain("global"); !errors.Is(err, ErrReservedName) {
		t.Errorf("global: %v", err)
	}
}
