//go:build !unix

package node

import "os"

// tryLock does not lock on systems without flock.
func tryLock(*os.File) (bool, error) { return false, nil }
