package coalesce

import (
	"bufio"
	"os"
	"path"
	"strconv"
	"strings"
)

// CPUQuota is the CPU bandwidth limit of the process's cgroup, or of the
// tightest of its ancestors, in CPUs (cgroup v2 cpu.max, or v1
// cpu.cfs_quota_us over cpu.cfs_period_us), and whether one is set. The
// runtime's GOMAXPROCS is at least 2 under a limit below 2 CPUs (and
// rounds others up), so a share of GOMAXPROCS alone never reaches a
// process held to 0.5 CPU.
func CPUQuota() (float64, bool) {
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	best, found := 0.0, false
	consider := func(q float64, ok bool) {
		if ok && (!found || q < best) {
			best, found = q, true
		}
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// hierarchy-ID:controllers:path
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		switch {
		case parts[0] == "0" && parts[1] == "":
			// The unified hierarchy: at /sys/fs/cgroup, or beside the v1
			// ones on a hybrid host.
			for _, mount := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
				eachAncestor(parts[2], func(p string) {
					consider(quotaV2(path.Join(mount, p, "cpu.max")))
				})
			}
		case hasController(parts[1], "cpu"):
			for _, mount := range []string{"/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/cpuacct,cpu"} {
				eachAncestor(parts[2], func(p string) {
					consider(quotaV1(path.Join(mount, p)))
				})
			}
		}
	}
	return best, found
}

func hasController(list, name string) bool {
	for _, c := range strings.Split(list, ",") {
		if c == name {
			return true
		}
	}
	return false
}

// eachAncestor calls fn with p and each of its parents up to "/".
func eachAncestor(p string, fn func(string)) {
	p = path.Clean("/" + p)
	for {
		fn(p)
		if p == "/" {
			return
		}
		p = path.Dir(p)
	}
}

// quotaV2 parses a cgroup v2 cpu.max file: "max 100000" (no limit) or
// "50000 100000" (half a CPU).
func quotaV2(file string) (float64, bool) {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, false
	}
	f := strings.Fields(string(b))
	if len(f) != 2 || f[0] == "max" {
		return 0, false
	}
	return ratio(f[0], f[1])
}

// quotaV1 reads a cgroup v1 cpu directory's quota and period (a quota of
// -1 is no limit).
func quotaV1(dir string) (float64, bool) {
	q, err := os.ReadFile(path.Join(dir, "cpu.cfs_quota_us"))
	if err != nil {
		return 0, false
	}
	p, err := os.ReadFile(path.Join(dir, "cpu.cfs_period_us"))
	if err != nil {
		return 0, false
	}
	return ratio(strings.TrimSpace(string(q)), strings.TrimSpace(string(p)))
}

func ratio(quota, period string) (float64, bool) {
	q, err1 := strconv.ParseFloat(quota, 64)
	p, err2 := strconv.ParseFloat(period, 64)
	if err1 != nil || err2 != nil || q <= 0 || p <= 0 {
		return 0, false
	}
	return q / p, true
}
