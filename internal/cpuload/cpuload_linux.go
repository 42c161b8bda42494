package cpuload

import (
	"bytes"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// New returns a Sampler over the CPUs in the process's affinity mask (all
// CPUs if the mask cannot be read), from /proc/stat.
func New() (*Sampler, error) {
	var set unix.CPUSet
	var mask func(int) bool
	if err := unix.SchedGetaffinity(0, &set); err == nil && set.Count() > 0 {
		mask = set.IsSet
	}
	read := func() (uint64, uint64, error) {
		b, err := os.ReadFile("/proc/stat")
		if err != nil {
			return 0, 0, err
		}
		return parseStat(b, mask)
	}
	s := &Sampler{read: read}
	var err error
	if s.busy, s.total, err = read(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnsupported, err)
	}
	return s, nil
}

// parseStat sums the busy and total jiffies of the per-CPU lines ("cpuN
// user nice system idle iowait irq softirq steal ...") of /proc/stat for
// the CPUs mask accepts (every CPU when mask is nil).
func parseStat(b []byte, mask func(int) bool) (busy, total uint64, err error) {
	found := false
	for line := range bytes.Lines(b) {
		if !bytes.HasPrefix(line, []byte("cpu")) || len(line) < 4 || line[3] < '0' || line[3] > '9' {
			continue
		}
		f := bytes.Fields(line)
		cpu, err := strconv.Atoi(string(f[0][3:]))
		if err != nil || len(f) < 5 {
			return 0, 0, fmt.Errorf("cpuload: malformed line %q", bytes.TrimSpace(line))
		}
		if mask != nil && !mask(cpu) {
			continue
		}
		for i, v := range f[1:min(len(f), 9)] {
			n, err := strconv.ParseUint(string(v), 10, 64)
			if err != nil {
				return 0, 0, fmt.Errorf("cpuload: malformed line %q", bytes.TrimSpace(line))
			}
			total += n
			if i != 3 && i != 4 { // idle, iowait
				busy += n
			}
		}
		found = true
	}
	if !found {
		return 0, 0, fmt.Errorf("cpuload: no per-CPU line")
	}
	return busy, total, nil
}
