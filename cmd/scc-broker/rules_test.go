package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The broker reads SCC_CHANNELS_FILE like the frontend: a good file sets
// Config.Rules, a bad one stops startup naming the rule and the field.
func TestLoadChannelsFile(t *testing.T) {
	st, _, err := load(env(nil))
	if err != nil || st.cfg.Rules != nil {
		t.Fatalf("no file: rules %v, err %v", st.cfg.Rules, err)
	}
	dir := t.TempDir()
	good := filepath.Join(dir, "channels.yaml")
	if err := os.WriteFile(good, []byte("rules:\n  - {match: \"chat:*\", subscribe: authenticated, publish: authenticated, history: {size: 10, ttl: 5m}}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	st, _, err = load(env(map[string]string{"SCC_CHANNELS_FILE": good}))
	if err != nil || st.cfg.Rules == nil || st.cfg.Rules.Options("chat:1").History.Size != 10 {
		t.Fatalf("good file: rules %v, err %v", st.cfg.Rules, err)
	}
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"rules": [{"match": "chat:*", "subscribe": "anyone", "publish": "anyone", "publish_rate": {"per_second": -1}}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err = load(env(map[string]string{"SCC_CHANNELS_FILE": bad}))
	if err == nil || !strings.Contains(err.Error(), `SCC_CHANNELS_FILE: rules: rule 0 (match "chat:*"): field "publish_rate.per_second"`) {
		t.Fatalf("bad file: %v", err)
	}
	if _, _, err = load(env(map[string]string{"SCC_CHANNELS_FILE": filepath.Join(dir, "missing.yaml")})); err == nil {
		t.Fatal("missing file accepted")
	}
}
