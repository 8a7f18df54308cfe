package hostport

import "testing"

func TestCheck(t *testing.T) {
	for addr, ok := range map[string]bool{
		"": true, ":5060": true, "127.0.0.1:0": true, "[::1]:65535": true, "localhost:5060": true,
		"127.0.0.1": false, ":65536": false, ":-1": false, ":sip": false, "[::1:5060": false,
	} {
		if err := Check(addr); (err == nil) != ok {
			t.Errorf("Check(%q) = %v, want ok %v", addr, err, ok)
		}
	}
}
