package frontend

import (
	"testing"
	"time"
)

func TestValidateCoalescing(t *testing.T) {
	for _, mutate := range []func(*Config){
		func(c *Config) { c.WriteCoalesce = -time.Millisecond },
		func(c *Config) { c.WriteCoalesceWait = -time.Millisecond },
		func(c *Config) { c.WriteCoalesceBusy = -0.1 },
		func(c *Config) { c.WriteCoalesceBusy = 1.5 },
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
