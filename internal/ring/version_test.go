package ring

import (
	"errors"
	"math"
	"testing"
)

func TestCheckVersion(t *testing.T) {
	for _, tc := range []struct {
		held uint64
		has  bool
		v    uint64
		want error
	}{
		{0, false, 1, nil},
		{0, false, MaxVersion, nil},
		{0, false, MaxVersion + 1, ErrVersionCeiling},
		{0, false, math.MaxUint64, ErrVersionCeiling},
		{5, true, math.MaxUint64, ErrVersionCeiling},
		{5, true, 5 + DefaultMaxVersionStep, nil},
		{5, true, 6 + DefaultMaxVersionStep, ErrVersionJump},
		{0, true, 1 << 40, ErrVersionJump},
		{1 << 40, true, 3, nil}, // older: not this check's business
		{MaxVersion - 1, true, MaxVersion, nil},
	} {
		err := CheckVersion(tc.held, tc.has, tc.v, 0)
		if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
			t.Errorf("CheckVersion(%d, %v, %d) = %v, want %v", tc.held, tc.has, tc.v, err, tc.want)
		}
	}
	if err := CheckVersion(10, true, 12, 1); !errors.Is(err, ErrVersionJump) {
		t.Errorf("step 1: %v", err)
	}
}
