// Package kamcfg holds what the Kamailio configurations of the tests and of
// the benchmarks share: where Kamailio's modules are and the modules a
// registrar and transaction-stateful proxy loads.
package kamcfg
