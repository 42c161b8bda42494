package frontend

import "testing"

// TestChargeBounded: a closing socket's released subscriptions are
// charged into debt no deeper than the burst, and never forgive a
// deeper debt that waiting sockets reserved (it used to raise such a
// debt to -burst, handing out the difference again).
func TestChargeBounded(t *testing.T) {
	const rate, burst = 100, 1000
	for _, tc := range []struct {
		name      string
		before, n float64
		want      float64
	}{
		{"full bucket", burst, 300, burst - 300},
		{"into debt, bounded", 200, 5000, -burst},
		{"a deeper debt stays", -3000, 50, -3000},
		{"a debt at the bound", -burst, 10, -burst},
	} {
		b := bucket{tokens: tc.before, at: 7}
		b.chargeBounded(7, tc.n, rate, burst)
		if b.tokens != tc.want {
			t.Errorf("%s: %v tokens after charging %v to %v, want %v", tc.name, b.tokens, tc.n, tc.before, tc.want)
		}
	}
}
