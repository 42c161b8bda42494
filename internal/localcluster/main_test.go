package localcluster

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"go.uber.org/goleak"
)

// fakeBinDir holds scc-state, scc-broker and scc-frontend, all links to the
// fakenode test program, built once for the package.
var fakeBinDir string

func TestMain(m *testing.M) {
	if os.Getenv(supervisorEnv) != "" {
		supervisorMain()
		return
	}
	dir, err := os.MkdirTemp("", "localcluster-fake-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := func() int {
		defer os.RemoveAll(dir)
		bin := filepath.Join(dir, "fakenode")
		cmd := exec.Command("go", "build", "-o", bin, "./testdata/fakenode")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "building fakenode:", err)
			return 1
		}
		for _, r := range []string{"state", "broker", "frontend"} {
			if err := os.Symlink(bin, filepath.Join(dir, "scc-"+r)); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
		}
		fakeBinDir = dir
		return goleakRun(m)
	}()
	os.Exit(code)
}

// goleakRun runs the tests and then checks for leaked goroutines.
func goleakRun(m *testing.M) int {
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			return 1
		}
	}
	return code
}

// syncBuffer is a bytes.Buffer safe for the children's output copiers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
