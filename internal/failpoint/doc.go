// Package failpoint is dmsnap's crash injection for tests: named points in
// multi-step operations where, when armed through the environment, the
// process exits at once (a crash as close as a process can get) or pauses
// so a test can act on the system mid-step.
//
// Every package with a crash-safe operation calls [Hit] at its steps; tests
// arm them with [Env] and expect [ExitCode]. The names are listed in
// docs/formats.md. Unarmed, a point costs one environment lookup.
package failpoint
