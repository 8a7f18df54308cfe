// Package domains implements hiersip's overlays: naming of users and domains
// (draft §5), signed binding records, and the kad-dht namespaces of a domain
// (the draft's local overlay) and of the global overlay of proxies.
package domains
