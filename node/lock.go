package node

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// LockFile is the file in the data directory that a running node keeps
// locked (flock), with its process ID inside, so that two nodes never run
// with one identity and one peer cache.
const LockFile = "hiersip.lock"

// ErrDataDirLocked is wrapped by the error of New and NewWithHost when
// another node holds the lock of the data directory.
var ErrDataDirLocked = errors.New("node: data directory in use")

// dirLock is a held lock on a data directory.
type dirLock struct {
	f    *os.File
	once sync.Once
}

// lockDataDir creates dir if needed and locks it for this node. When another
// process (or another node of this process) holds it, the error names the
// holder's process ID as written in the lock file.
func lockDataDir(dir string) (*dirLock, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("node: data directory: %w", err)
	}
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("node: lock %s: %w", path, err)
	}
	held, err := tryLock(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("node: lock %s: %w", path, err)
	}
	if held {
		b := make([]byte, 32)
		n, _ := f.ReadAt(b, 0)
		f.Close()
		holder := "another process"
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b[:n]))); err == nil && pid > 0 {
			holder = "process " + strconv.Itoa(pid)
			if pid == os.Getpid() {
				holder += " (this one: another node)"
			}
		}
		return nil, fmt.Errorf("%w: %s is locked by %s, a node running with this data directory (lock file %s)",
			ErrDataDirLocked, dir, holder, path)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &dirLock{f: f}, nil
}

// release unlocks the directory (closing the file drops the lock); later
// calls do nothing.
func (l *dirLock) release() error {
	if l == nil {
		return nil
	}
	var err error
	l.once.Do(func() {
		_ = l.f.Truncate(0)
		err = l.f.Close()
	})
	return err
}
