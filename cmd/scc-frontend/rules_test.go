package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadChannelsFile(t *testing.T) {
	st, _, err := load(env(nil))
	if err != nil || st.cfg.Rules != nil {
		t.Fatalf("no file: rules %v, err %v", st.cfg.Rules, err)
	}
	dir := t.TempDir()
	good := filepath.Join(dir, "channels.yaml")
	if err := os.WriteFile(good, []byte("rules:\n  - {match: \"user:{sub}\", subscribe: authenticated, publish: nobody}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	st, _, err = load(env(map[string]string{"SCC_CHANNELS_FILE": good}))
	if err != nil || st.cfg.Rules == nil || len(st.cfg.Rules.Rules()) != 1 {
		t.Fatalf("good file: rules %v, err %v", st.cfg.Rules, err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("rules:\n  - {match: \"user:{sub}\", subscribe: authenticate, publish: nobody}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err = load(env(map[string]string{"SCC_CHANNELS_FILE": bad}))
	if err == nil || !strings.Contains(err.Error(), `SCC_CHANNELS_FILE: rules: rule 0 (match "user:{sub}"): field "subscribe"`) {
		t.Fatalf("bad file: %v", err)
	}
	if _, _, err = load(env(map[string]string{"SCC_CHANNELS_FILE": filepath.Join(dir, "missing.yaml")})); err == nil {
		t.Fatal("missing file accepted")
	}
}
