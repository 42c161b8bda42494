package presence

import (
	"fmt"
	"runtime"
	"testing"
)

// BenchmarkStats100k is presence_stats at the owner of a channel of
// 100k members.
func BenchmarkStats100k(b *testing.B) {
	tb := NewTable()
	for i := range 100_000 {
		tb.Join(uint64(i%4), "big", Member{Client: fmt.Sprintf("c%d", i), User: fmt.Sprintf("u%d", i%50_000)})
	}
	b.ReportAllocs()
	for b.Loop() {
		if tb.Stats("big").Clients != 100_000 {
			b.Fatal("wrong count")
		}
	}
}

// BenchmarkJoinLeave is one member joining and leaving a channel of 100k
// members at its owner (with events on).
func BenchmarkJoinLeave(b *testing.B) {
	h, _ := NewHub(Config{JoinLeave: func(string) bool { return true }, Publish: func(string, []byte) {}})
	for i := range 100_000 {
		h.Table().Join(1, "big", Member{Client: fmt.Sprintf("c%d", i)})
	}
	ms := []Member{{Client: "new", User: "u"}}
	cl := []string{"new"}
	b.ReportAllocs()
	for b.Loop() {
		h.Join(2, "big", ms, false)
		h.Leave(2, "big", cl)
	}
}

// BenchmarkMemoryPerMember reports the heap one present member costs at
// the owner (100k members of one channel, 20-byte client ids, user ids,
// no info).
func BenchmarkMemoryPerMember(b *testing.B) {
	const n = 100_000
	ids := make([]string, n)
	users := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("AbCdEfGhIjKlMn%06d", i)
		users[i] = fmt.Sprintf("user-%d", i)
	}
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		tb := NewTable()
		for i := range n {
			tb.Join(1, "big", Member{Client: ids[i], User: users[i]})
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "B/member")
		runtime.KeepAlive(tb)
	}
}
