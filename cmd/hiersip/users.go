package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/hiersip/hiersip/domains"
	"github.com/hiersip/hiersip/sipbridge"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// usersFlags locate the users file: --file, else sip.users_file of the
// node's configuration.
type usersFlags struct {
	nodeFlags
	file, realm string
}

func (f *usersFlags) add(cmd *cobra.Command) {
	f.nodeFlags.addConfig(cmd)
	cmd.Flags().StringVar(&f.file, "file", "", "users file (default: sip.users_file of the node's configuration)")
}

// path returns the users file and the node's domain.
func (f *usersFlags) path() (file, domain string, err error) {
	cfg, err := f.loadConfig()
	if err != nil {
		return "", "", err
	}
	file = f.file
	if file == "" {
		file = cfg.SIP.UsersFile
	}
	if file == "" {
		return "", "", errors.New("no users file: give --file, or set sip.users_file in the node's configuration (--config)")
	}
	return file, cfg.Domain, nil
}

func newUsersCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "users",
		Short: "Add, remove and list the SIP users of a node's users file",
		Long: `Edit the users file that turns on digest authentication of the node's
local user agents (sip.users_file): one "user:realm:HA1[:user-key]" line per
user. HA1 is MD5(user:realm:password) as Apache's htdigest and Kamailio write
it; add writes "MD5,SHA-256" (RFC 8760) and a user key, an Ed25519 key that
signs the user's bindings in the overlay, so that the user's phones can move
to any node whose users file has the same line (copy it there). The
file is written whole (a new file, renamed over the old one) with mode 0600;
an existing file keeps its owner and group. A running node reads it again on
SIGHUP (systemctl reload hiersip).`,
	}
	cmd.AddCommand(newUsersAddCmd(), newUsersRemoveCmd(), newUsersListCmd())
	return cmd
}

func newUsersAddCmd() *cobra.Command {
	var (
		f             usersFlags
		password      string
		passwordStdin bool
		noKey         bool
	)
	cmd := &cobra.Command{
		Use:   "add USER",
		Short: "Add a user, or change a user's password",
		Long: `Add USER to the users file, or replace its line. The realm is --realm,
else the node's domain (which the node uses in its challenges). The password
is read from the terminal (twice, not shown), or from the first line of
standard input with --password-stdin, or from --password (visible to other
users of the machine in the process list: avoid it).`,
		Example: `  hiersip users add alice -c /etc/hiersip/hiersip.yaml
  printf '%s\n' "$PASSWORD" | hiersip users add bob --file users --realm pastry --password-stdin`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			user := args[0]
			if err := checkUserName(user); err != nil {
				return err
			}
			file, domain, err := f.path()
			if err != nil {
				return err
			}
			realm := f.realm
			if realm == "" {
				realm = domain
			}
			if realm == "" || strings.Contains(realm, ":") {
				return fmt.Errorf("realm %q: give --realm, or set domain in the node's configuration", realm)
			}
			switch {
			case cmd.Flags().Changed("password"):
			case passwordStdin:
				line, err := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
				if err != nil && !errors.Is(err, io.EOF) {
					return err
				}
				password = strings.TrimRight(line, "\r\n")
			default:
				if password, err = readPasswordTerminal(cmd, user); err != nil {
					return err
				}
			}
			if password == "" {
				return errors.New("empty password")
			}
			key, err := userKeyField(file, user, noKey)
			if err != nil {
				return err
			}
			line := sipbridge.UsersLine(user, realm, password)
			if key != "" {
				line += ":" + key
			}
			added, err := editUsers(file, user, line)
			if err != nil {
				return err
			}
			verb := "changed the password of"
			if added {
				verb = "added"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s %s (realm %s) in %s; a running node reads it on SIGHUP\n", verb, user, realm, file)
			return nil
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&f.realm, "realm", "", "digest realm (default: the node's domain)")
	cmd.Flags().StringVar(&password, "password", "", "the password (visible in the process list; prefer the prompt or --password-stdin)")
	cmd.Flags().BoolVar(&passwordStdin, "password-stdin", false, "read the password from the first line of standard input")
	cmd.Flags().BoolVar(&noKey, "no-key", false, "write no user key: the node that first registers the user owns her name in the overlay until it lapses")
	return cmd
}

func newUsersRemoveCmd() *cobra.Command {
	var f usersFlags
	cmd := &cobra.Command{
		Use:     "remove USER",
		Aliases: []string{"rm"},
		Short:   "Remove a user",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			file, _, err := f.path()
			if err != nil {
				return err
			}
			found, err := editUsers(file, args[0], "")
			if err != nil {
				return err
			}
			if !found {
				return fmt.Errorf("no user %s in %s", args[0], file)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "removed %s from %s; a running node forgets it on SIGHUP\n", args[0], file)
			return nil
		},
	}
	f.add(cmd)
	return cmd
}

func newUsersListCmd() *cobra.Command {
	var f usersFlags
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the users and their realms",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			file, _, err := f.path()
			if err != nil {
				return err
			}
			data, err := os.ReadFile(file)
			if err != nil {
				return err
			}
			if _, err := sipbridge.ReadUsers(bytes.NewReader(data)); err != nil {
				return fmt.Errorf("%s: %w", file, err)
			}
			for _, line := range strings.Split(string(data), "\n") {
				if user, realm, ok := userLine(line); ok {
					key := "no user key"
					if _, k, err := domains.ParseUsersLine(line); err == nil && k != nil {
						key = "user key"
					}
					fmt.Fprintf(cmd.OutOrStdout(), "%s\t%s\t%s\n", user, realm, key)
				}
			}
			return nil
		},
	}
	f.add(cmd)
	return cmd
}

func checkUserName(u string) error {
	if u == "" || strings.ContainsAny(u, ":#@ \t\r\n") {
		return fmt.Errorf("user %q: want the user part of an AOR, without ':', '@', '#' or spaces", u)
	}
	return nil
}

// userLine splits a users-file line; ok is false for blanks and comments.
func userLine(line string) (user, realm string, ok bool) {
	line = strings.TrimSpace(line)
	if line == "" || strings.HasPrefix(line, "#") {
		return "", "", false
	}
	f := strings.Split(line, ":")
	if len(f) != 3 && len(f) != 4 {
		return "", "", false
	}
	return f[0], f[1], true
}

// userKeyField is the user-key field of user's line in file (its fourth field,
// domains.FormatUserKey): kept when the user is there with one, so that a new
// password does not change who owns the user's name in the overlay; else a new
// key, or none with noKey.
func userKeyField(file, user string, noKey bool) (string, error) {
	if noKey {
		return "", nil
	}
	data, err := os.ReadFile(file)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	for _, l := range strings.Split(string(data), "\n") {
		if u, k, err := domains.ParseUsersLine(l); err == nil && u == user && k != nil {
			return domains.FormatUserKey(k)
		}
	}
	k, err := domains.GenerateUserKey()
	if err != nil {
		return "", err
	}
	return domains.FormatUserKey(k)
}

// editUsers replaces the lines of user in file by line ("": removes them),
// keeping every other line, and reports whether user was
// absent (add) or present (remove). The file is checked before and after
// (sipbridge.ReadUsers) and written whole with mode 0600; an existing file
// keeps its owner and group, a new one takes those of its directory (a
// users file in a service's state directory stays readable by the service).
func editUsers(file, user, line string) (bool, error) {
	old, err := os.ReadFile(file)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	if _, err := sipbridge.ReadUsers(bytes.NewReader(old)); err != nil {
		return false, fmt.Errorf("%s: %w", file, err)
	}
	var out strings.Builder
	present := false
	for _, l := range strings.SplitAfter(string(old), "\n") {
		if l == "" {
			continue
		}
		if u, _, ok := userLine(l); ok && u == user {
			present = true
			continue
		}
		out.WriteString(l)
		if !strings.HasSuffix(l, "\n") {
			out.WriteString("\n")
		}
	}
	if line != "" {
		out.WriteString(line + "\n")
	}
	if _, err := sipbridge.ReadUsers(strings.NewReader(out.String())); err != nil {
		return false, err
	}
	owner, err := os.Stat(file)
	if errors.Is(err, fs.ErrNotExist) {
		owner, err = os.Stat(filepath.Dir(file))
	}
	if err != nil {
		return false, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+".*")
	if err != nil {
		return false, err
	}
	defer os.Remove(tmp.Name())
	chownLike(tmp, owner)
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return false, err
	}
	if _, err := tmp.WriteString(out.String()); err != nil {
		tmp.Close()
		return false, err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return false, err
	}
	if err := tmp.Close(); err != nil {
		return false, err
	}
	if err := os.Rename(tmp.Name(), file); err != nil {
		return false, err
	}
	if line != "" {
		return !present, nil
	}
	return present, nil
}

// readPasswordTerminal prompts twice on the terminal, without echo.
func readPasswordTerminal(cmd *cobra.Command, user string) (string, error) {
	fd := int(os.Stdin.Fd())
	if !term.IsTerminal(fd) {
		return "", errors.New("standard input is not a terminal: give the password with --password-stdin")
	}
	errOut := cmd.ErrOrStderr()
	fmt.Fprintf(errOut, "password for %s: ", user)
	p1, err := term.ReadPassword(fd)
	fmt.Fprintln(errOut)
	if err != nil {
		return "", err
	}
	fmt.Fprint(errOut, "again: ")
	p2, err := term.ReadPassword(fd)
	fmt.Fprintln(errOut)
	if err != nil {
		return "", err
	}
	if !bytes.Equal(p1, p2) {
		return "", errors.New("the passwords differ")
	}
	return string(p1), nil
}
