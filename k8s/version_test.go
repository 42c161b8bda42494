package k8s

import (
	"os"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// TestProdTagIsVersion: the prod overlay pins the image tag that `make
// image` builds, the repository's VERSION.
func TestProdTagIsVersion(t *testing.T) {
	v, err := os.ReadFile("../VERSION")
	if err != nil {
		t.Fatal(err)
	}
	version := strings.TrimSpace(string(v))
	b, err := os.ReadFile("overlays/prod/kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var k struct {
		Images []struct {
			Name, NewTag string
		}
	}
	if err := yaml.Unmarshal(b, &k); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, im := range k.Images {
		if im.Name == "sccgo" {
			found = true
			if im.NewTag != version {
				t.Errorf("prod pins sccgo:%s, VERSION is %s (make image tags VERSION)", im.NewTag, version)
			}
		}
	}
	if !found {
		t.Error("prod pins no sccgo tag")
	}
}
