package sipbridge

import (
	"os/exec"
	"strings"
)

func goListDir(mod string) (string, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", mod).Output()
	return strings.TrimSpace(string(out)), err
}
