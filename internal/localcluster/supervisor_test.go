package localcluster

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// supervisorEnv makes the test binary act as a supervisor process (see
// TestChildrenDieWithSupervisor); supervisorBinEnv names its BinDir.
const (
	supervisorEnv    = "LOCALCLUSTER_TEST_SUPERVISOR"
	supervisorBinEnv = "LOCALCLUSTER_TEST_BINDIR"
)

// supervisorMain starts a cluster, prints its children's pids and "ready",
// then waits to be killed without ever cleaning up.
func supervisorMain() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Start(ctx, Options{BinDir: os.Getenv(supervisorBinEnv), Brokers: 1, Frontends: 1,
		PollInterval: 20 * time.Millisecond})
	if err == nil {
		err = c.WaitReady(ctx)
	}
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	for _, p := range c.Procs() {
		fmt.Println("pid", p.PID)
	}
	fmt.Println("ready")
	time.Sleep(time.Minute)
	os.Exit(1)
}

func TestChildrenDieWithSupervisor(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), supervisorEnv+"=1", supervisorBinEnv+"="+fakeBinDir)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	var pids []int
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		if line == "ready" {
			break
		}
		if rest, ok := strings.CutPrefix(line, "pid "); ok {
			pid, err := strconv.Atoi(rest)
			if err != nil {
				t.Fatal(err)
			}
			pids = append(pids, pid)
		} else {
			t.Fatalf("supervisor: %s", line)
		}
	}
	if len(pids) != 3 {
		t.Fatalf("supervisor reported pids %v, want 3", pids)
	}
	for _, pid := range pids {
		if gone(pid) {
			t.Fatalf("child %d not running before the supervisor dies", pid)
		}
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	waitFor(t, 5*time.Second, "children to die with their supervisor", func() bool {
		for _, pid := range pids {
			if !gone(pid) {
				return false
			}
		}
		return true
	})
}
