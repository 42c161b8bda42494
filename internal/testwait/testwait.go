// Package testwait is the one polling helper of sccgo's tests: wait for a
// condition with a deadline instead of sleeping a guessed time.
package testwait

import (
	"testing"
	"time"
)

// Poll is how often For checks its condition.
const Poll = 5 * time.Millisecond

// For checks cond every Poll until it holds, and fails the test when it
// still does not after d.
func For(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(Poll)
	}
}
