# Convenience targets; CI runs bash .ci/run (scripts/test.sh).
#
#   make                 build ./hiersip, with the version stamped in
#   make install         install it, the systemd unit and a default
#                        configuration (PREFIX=/usr/local, DESTDIR for staging)
#   make bench           the benchmark (README "Benchmarks")
.PHONY: all build bench-build test bench bench-quick install uninstall

PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/bin
SYSCONFDIR ?= /etc
UNITDIR    ?= $(PREFIX)/lib/systemd/system
DESTDIR    ?=
GO         ?= go
# Where the binaries are built (make build writes ./hiersip).
BUILDDIR   ?= .
# The version stamped into the binary (hiersip --version): the git tag or
# commit of this checkout, or VERSION=... on the command line.
VERSION    ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo unknown)
LDFLAGS    := -X main.version=$(VERSION) -X main.defaultConfigFile=$(SYSCONFDIR)/hiersip/hiersip.yaml

all: build

build:
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BUILDDIR)/hiersip ./cmd/hiersip

# The benchmark driver is a command of its own, not part of hiersip.
bench-build:
	$(GO) build -o $(BUILDDIR)/hiersip-bench ./cmd/hiersip-bench

test:
	bash scripts/test.sh

# The benchmark (README "Benchmarks"): about 25 minutes on 2 cores; needs the
# go command (it builds ./cmd/hiersip: every node is a `hiersip node` process)
# and the Debian packages sip-tester and kamailio (it installs nothing).
# BENCHFLAGS adds options, e.g. BENCHFLAGS="--profile --sections cpu".
bench: bench-build
	$(BUILDDIR)/hiersip-bench -v $(BENCHFLAGS)

bench-quick: bench-build
	$(BUILDDIR)/hiersip-bench --quick $(BENCHFLAGS)

# Installs the binary, the systemd unit (ExecStart and the configuration
# path follow BINDIR and SYSCONFDIR) and, unless one exists, the default
# configuration $(SYSCONFDIR)/hiersip/hiersip.yaml. Then, as root:
#   systemctl daemon-reload && systemctl enable --now hiersip
install: build
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSCONFDIR)/hiersip
	install -m 0755 $(BUILDDIR)/hiersip $(DESTDIR)$(BINDIR)/hiersip
	sed -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' packaging/hiersip.service \
		> $(DESTDIR)$(UNITDIR)/hiersip.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/hiersip.service
	test -e $(DESTDIR)$(SYSCONFDIR)/hiersip/hiersip.yaml || \
		install -m 0644 packaging/hiersip.yaml $(DESTDIR)$(SYSCONFDIR)/hiersip/hiersip.yaml

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/hiersip $(DESTDIR)$(UNITDIR)/hiersip.service
	@echo "kept $(DESTDIR)$(SYSCONFDIR)/hiersip and /var/lib/hiersip (configuration, identity, users)"
