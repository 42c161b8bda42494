package frontend

import (
	"testing"
	"time"
)

func TestCoalesceGapFollowsLoad(t *testing.T) {
	const max = 30 * time.Millisecond
	for _, c := range []struct {
		load float64
		want time.Duration
	}{
		{0, 0}, {0.3, 0}, {0.5, 0}, {0.625, max / 2}, {0.75, max}, {0.9, max}, {1, max},
	} {
		if got := coalesceGap(max, 0.5, c.load); got != c.want {
			t.Errorf("load %.3f: gap %v, want %v", c.load, got, c.want)
		}
	}
}

func TestValidateCoalescing(t *testing.T) {
	for _, mutate := range []func(*Config){
		func(c *Config) { c.WriteCoalesce = -time.Millisecond },
		func(c *Config) { c.WriteCoalesceLoad = -0.1 },
		func(c *Config) { c.WriteCoalesceLoad = 1 },
		func(c *Config) { c.WriterLinger = -time.Millisecond },
	} {
		c := DefaultConfig()
		mutate(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("accepted %+v", c)
		}
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
}
