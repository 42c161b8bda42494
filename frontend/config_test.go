package frontend

import (
	"testing"
	"time"
)

func TestCoalesceGapFollowsMessageRate(t *testing.T) {
	const max = 30 * time.Millisecond
	for _, c := range []struct {
		rate float64
		want time.Duration
	}{
		{0, 0}, {10000, 0}, {20000, 0}, {30000, max / 2}, {40000, max}, {1e6, max},
	} {
		if got := coalesceGap(max, 20000, c.rate); got != c.want {
			t.Errorf("%.0f messages/s: gap %v, want %v", c.rate, got, c.want)
		}
	}
}

func TestLoadGap(t *testing.T) {
	const max = 30 * time.Millisecond
	for _, c := range []struct {
		load float64
		want time.Duration
	}{
		{0, 0}, {0.5, 0}, {0.625, max / 2}, {0.75, max}, {1, max},
	} {
		if got := loadGap(max, 0.5, c.load); got != c.want {
			t.Errorf("load %.3f: gap %v, want %v", c.load, got, c.want)
		}
	}
	// From 0.8 the ramp ends at a fully busy CPU.
	if got := loadGap(max, 0.8, 0.9); got != max/2 {
		t.Errorf("from 0.8, load 0.9: gap %v, want %v", got, max/2)
	}
	if got := loadGap(max, 0.8, 1); got != max {
		t.Errorf("from 0.8, load 1: gap %v, want %v", got, max)
	}
}

func TestValidateCoalescing(t *testing.T) {
	for _, mutate := range []func(*Config){
		func(c *Config) { c.WriteCoalesce = -time.Millisecond },
		func(c *Config) { c.WriteCoalesceRate = -1 },
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
