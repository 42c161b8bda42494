package config

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckAuthKey(t *testing.T) {
	long := strings.Repeat("k", MinAuthKeyBytes)
	for _, tc := range []struct {
		key      string
		insecure bool
		want     error
	}{
		{"", false, ErrNoAuthKey},
		{"short", false, ErrShortAuthKey},
		{long[:MinAuthKeyBytes-1], false, ErrShortAuthKey},
		{"REPLACE-ME", false, ErrExampleAuthKey},
		{" dev-only-insecure-cluster-key ", false, ErrExampleAuthKey},
		{long, false, nil},
		{"", true, nil},
		{"REPLACE-ME", true, nil},
	} {
		err := CheckAuthKey([]byte(tc.key), tc.insecure)
		if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
			t.Errorf("CheckAuthKey(%q, %v) = %v, want %v", tc.key, tc.insecure, err, tc.want)
		}
	}
}
