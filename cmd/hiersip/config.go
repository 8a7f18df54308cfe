package main

import (
	"errors"
	"io/fs"
	"os"

	"github.com/hiersip/hiersip/node/daemon"
)

// defaultConfigFile is the configuration file of an installed node (make
// install, packaging/hiersip.service), read when neither --config nor
// HIERSIP_CONFIG names one and it exists. Builds can move it:
// -ldflags "-X main.defaultConfigFile=/usr/local/etc/hiersip/hiersip.yaml".
var defaultConfigFile = "/etc/hiersip/hiersip.yaml"

// resolveConfigPath returns the configuration file to read: --config when
// given (also ""), else $HIERSIP_CONFIG when set, else defaultConfigFile when
// it exists, else "" (no file).
func resolveConfigPath(flag string, given bool) string {
	if given {
		return flag
	}
	if p, ok := os.LookupEnv(daemon.EnvPrefix + "CONFIG"); ok {
		return p
	}
	if _, err := os.Stat(defaultConfigFile); !errors.Is(err, fs.ErrNotExist) {
		return defaultConfigFile
	}
	return ""
}
