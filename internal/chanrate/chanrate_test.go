package chanrate

import (
	"strconv"
	"testing"
	"time"
)

func TestFloodIsBoundedPerChannel(t *testing.T) {
	l := New(Config{Default: Rule{Rate: 100, Burst: 10}, MaxChannels: 1000})
	t0 := time.Unix(1000, 0)
	allowed := 0
	// 10,000 attempts spread over one second: the burst plus the rate.
	for i := range 10000 {
		if l.AllowAt("hot", t0.Add(time.Duration(i)*100*time.Microsecond)) {
			allowed++
		}
	}
	if allowed < 100 || allowed > 111 {
		t.Fatalf("allowed %d publishes in 1s at 100/s burst 10", allowed)
	}
	// Another channel is untouched by the flood.
	for i := range 10 {
		if !l.AllowAt("quiet", t0.Add(time.Second)) {
			t.Fatalf("quiet channel refused at publish %d", i)
		}
	}
}

func TestRuleHook(t *testing.T) {
	rules := map[string]Rule{"free": {}, "slow": {Rate: 1, Burst: 1}}
	l := New(Config{Default: Rule{Rate: 1000, Burst: 1000}, MaxChannels: 100, RuleFor: func(ch string) (Rule, bool) {
		r, ok := rules[ch]
		return r, ok
	}})
	now := time.Unix(1000, 0)
	for range 5000 {
		if !l.AllowAt("free", now) {
			t.Fatal("unlimited channel refused")
		}
	}
	if !l.AllowAt("slow", now) || l.AllowAt("slow", now) {
		t.Fatal("slow channel: want one publish, then a refusal")
	}
	// A changed rule applies to the channel's bucket.
	rules["slow"] = Rule{Rate: 1000, Burst: 5}
	l.AllowAt("slow", now.Add(10*time.Millisecond)) // the change takes effect here
	if !l.AllowAt("slow", now.Add(20*time.Millisecond)) {
		t.Fatal("new rule not applied")
	}
	if l.Len() != 1 {
		t.Fatalf("tracked %d channels, want 1 (unlimited ones are not tracked)", l.Len())
	}
}

func TestTableIsBounded(t *testing.T) {
	l := New(Config{Default: Rule{Rate: 10, Burst: 2}, MaxChannels: 256})
	now := time.Unix(1000, 0)
	// Busy channels everywhere: each is left below a full bucket.
	for i := range 20000 {
		l.AllowAt("ch-"+strconv.Itoa(i), now)
	}
	if n := l.Len(); n > 256 {
		t.Fatalf("tracked %d channels, bound 256", n)
	}
	// Publishing on many channels does not reset a busy channel's bucket
	// more than rarely: the hot channel stays limited.
	allowed := 0
	for i := range 1000 {
		if l.AllowAt("hot", now) {
			allowed++
		}
		l.AllowAt("spray-"+strconv.Itoa(i), now)
	}
	if allowed > 2*10 {
		t.Fatalf("hot channel allowed %d publishes at one instant with burst 2", allowed)
	}
}

func TestValidate(t *testing.T) {
	for _, c := range []Config{
		{Default: Rule{Rate: -1}, MaxChannels: 1},
		{Default: Rule{Rate: 1}, MaxChannels: 1},
		{Default: Rule{Rate: 1, Burst: 1}},
	} {
		if c.Validate() == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	if err := (Config{Default: Rule{}, MaxChannels: 1}).Validate(); err != nil {
		t.Error(err)
	}
}

func BenchmarkAllow(b *testing.B) {
	l := New(Config{Default: Rule{Rate: 1e9, Burst: 1 << 30}, MaxChannels: 1 << 16})
	chans := make([]string, 1024)
	for i := range chans {
		chans[i] = "room-" + strconv.Itoa(i)
	}
	i := 0
	for b.Loop() {
		l.Allow(chans[i&1023])
		i++
	}
}

func TestAllowNWeighsPublishes(t *testing.T) {
	l := New(Config{Default: Rule{Rate: 1000, Burst: 2000}, MaxChannels: 10})
	now := time.Unix(1000, 0)
	// Publishes to 200 readers cost 200 each: ten fit the bucket.
	allowed := 0
	for range 100 {
		if l.AllowNAt("hot", now, 200) {
			allowed++
		}
	}
	if allowed != 10 {
		t.Fatalf("allowed %d publishes of cost 200 from a bucket of 2000", allowed)
	}
	// A cost above the burst takes a whole full bucket, once it refilled.
	if !l.AllowNAt("hot", now.Add(2*time.Second), 5000) {
		t.Fatal("a publish costing more than the burst is refused from a full bucket")
	}
	if l.AllowNAt("hot", now.Add(2*time.Second), 1) {
		t.Fatal("bucket not emptied by a publish costing more than the burst")
	}
}
