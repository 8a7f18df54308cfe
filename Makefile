# Convenience targets; CI runs bash .ci/run (scripts/test.sh).
.PHONY: build test bench bench-quick

build:
	go build -o hiersip ./cmd/hiersip

test:
	bash scripts/test.sh

# The benchmark (README "Benchmarks"): about 7 minutes on 2 cores; needs the
# Debian packages sip-tester and kamailio (it installs nothing).
bench: build
	./hiersip bench -v

bench-quick: build
	./hiersip bench --quick
