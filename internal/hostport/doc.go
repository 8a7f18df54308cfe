// Package hostport checks the host:port listen addresses of hiersip's
// settings (sip.udp, sip.tcp, admin.listen) in one way, so that the node
// and the daemon answer a bad one alike; each caller wraps the error in its
// ConfigError under the setting's name.
package hostport
