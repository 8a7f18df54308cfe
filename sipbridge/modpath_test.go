package sipbridge

import (
	"fmt"
	"os/exec"
	"strings"
)

func goListDir(mod string) (string, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", mod).Output()
	return strings.TrimSpace(string(out)), err
}

func sprintf(format string, a ...any) string { return fmt.Sprintf(format, a...) }
