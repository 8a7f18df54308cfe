//go:build !unix

package sipbridge

// nofileLimit is unknown outside Unix.
func nofileLimit() uint64 { return 0 }
