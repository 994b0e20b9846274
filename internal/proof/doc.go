// Package proof holds trainhook's proofs that cut across packages: tests of
// properties the soak (internal/cmd/soak) measures at scale, each small enough to run
// in CI and to fail on the one behaviour it pins. RELIABILITY.md explains
// each and the figures the soak recorded.
package proof
