package coalesce

import (
	"os"
	"path/filepath"
	"testing"
)

func TestQuotaFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, c := range []struct {
		body string
		want float64
		ok   bool
	}{
		{"max 100000\n", 0, false},
		{"50000 100000\n", 0.5, true},
		{"250000 100000\n", 2.5, true},
		{"garbage\n", 0, false},
	} {
		got, ok := quotaV2(write("cpu.max", c.body))
		if ok != c.ok || got != c.want {
			t.Errorf("cpu.max %q: %v %v, want %v %v", c.body, got, ok, c.want, c.ok)
		}
	}
	write("cpu.cfs_quota_us", "-1\n")
	write("cpu.cfs_period_us", "100000\n")
	if _, ok := quotaV1(dir); ok {
		t.Error("v1 quota -1: a limit")
	}
	write("cpu.cfs_quota_us", "150000\n")
	if got, ok := quotaV1(dir); !ok || got != 1.5 {
		t.Errorf("v1 quota 150000/100000: %v %v, want 1.5", got, ok)
	}
	var seen []string
	eachAncestor("/kubepods/pod1/c2", func(p string) { seen = append(seen, p) })
	if len(seen) != 4 || seen[0] != "/kubepods/pod1/c2" || seen[3] != "/" {
		t.Errorf("ancestors %v", seen)
	}
	// The process's own: whatever it is, it must not fail or be 0.
	if q, ok := CPUQuota(); ok && q <= 0 {
		t.Errorf("CPUQuota() = %v, true", q)
	}
}
