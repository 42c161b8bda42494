package bench

import (
	"bufio"
	"os"
	"strings"
)

// cpuAffinity returns the CPUs this process may run on, as the kernel
// lists them ("0", "0-1"), or "".
func cpuAffinity() string {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "Cpus_allowed_list:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
