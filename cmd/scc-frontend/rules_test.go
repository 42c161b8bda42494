package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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

func TestLoadDefaultHistory(t *testing.T) {
	st, _, err := load(env(map[string]string{"SCC_HISTORY_SIZE": "50", "SCC_HISTORY_TTL": "30s", "SCC_RECOVERY_MAX_PUBLICATIONS": "20"}))
	if err != nil || st.cfg.Rules == nil {
		t.Fatalf("rules %v, err %v", st.cfg.Rules, err)
	}
	o := st.cfg.Rules.Options("any")
	if o.History.Size != 50 || time.Duration(o.History.TTL) != 30*time.Second || !o.Recovery || st.cfg.RecoveryMaxPublications != 20 {
		t.Fatalf("default rule options %+v, max %d", o, st.cfg.RecoveryMaxPublications)
	}
	if _, _, err := load(env(map[string]string{"SCC_HISTORY_SIZE": "-1"})); err == nil {
		t.Fatal("negative history size accepted")
	}
}
