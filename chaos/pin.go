package chaos

import (
	"context"
	"fmt"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// Pin sets the CPU affinity of every thread of process pid to cpus (a
// taskset list such as "1" or "0-1") with taskset -a. New threads inherit
// the affinity of the thread that creates them, so a Go process stays
// pinned.
func Pin(pid int, cpus string) error {
	ts, err := exec.LookPath("taskset")
	if err != nil {
		return fmt.Errorf("pinning needs taskset: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, ts, "-a", "-p", "-c", cpus, strconv.Itoa(pid)).CombinedOutput()
	if err != nil {
		return fmt.Errorf("taskset %s %d: %v: %s", cpus, pid, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// AllCPUs is the taskset list of every CPU of the machine.
func AllCPUs() string { return fmt.Sprintf("0-%d", runtime.NumCPU()-1) }
