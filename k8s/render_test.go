package k8s

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// commandTimeout bounds every external command the tests run.
const commandTimeout = 60 * time.Second

// binDir is where `make build` puts the binaries, relative to this package.
var binDir = flag.String("bin", "../bin", "directory holding the built scc-* binaries")

// manifests is one rendered overlay, decoded into k8s.io/api types.
type manifests struct {
	deployments  map[string]*appsv1.Deployment
	statefulSets map[string]*appsv1.StatefulSet
	services     map[string]*corev1.Service
	configMaps   map[string]*corev1.ConfigMap
	secrets      map[string]*corev1.Secret
	namespaces   map[string]*corev1.Namespace
	ingresses    map[string]*networkingv1.Ingress
	hpas         map[string]*autoscalingv2.HorizontalPodAutoscaler
	pdbs         map[string]*policyv1.PodDisruptionBudget
	netpols      map[string]*networkingv1.NetworkPolicy
	// meta lists every object's metadata, for checks that apply to all.
	meta []objectRef
}

type objectRef struct {
	kind string
	meta *metav1.ObjectMeta
}

func (m *manifests) init() {
	m.deployments = map[string]*appsv1.Deployment{}
	m.statefulSets = map[string]*appsv1.StatefulSet{}
	m.services = map[string]*corev1.Service{}
	m.configMaps = map[string]*corev1.ConfigMap{}
	m.secrets = map[string]*corev1.Secret{}
	m.namespaces = map[string]*corev1.Namespace{}
	m.ingresses = map[string]*networkingv1.Ingress{}
	m.hpas = map[string]*autoscalingv2.HorizontalPodAutoscaler{}
	m.pdbs = map[string]*policyv1.PodDisruptionBudget{}
	m.netpols = map[string]*networkingv1.NetworkPolicy{}
}

var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

// decodeManifests splits a multi-document YAML stream and decodes every
// document strictly into the k8s.io/api type its apiVersion and kind name.
// Unknown kinds, unknown or duplicate fields, fields spelt with the wrong
// case, and two objects with the same kind and name are errors.
func decodeManifests(stream []byte) (*manifests, error) {
	m := &manifests{}
	m.init()
	var errs []error
	for i, doc := range docSeparator.Split(string(stream), -1) {
		if strings.TrimSpace(stripComments(doc)) == "" {
			continue
		}
		if err := m.add([]byte(doc)); err != nil {
			errs = append(errs, fmt.Errorf("document %d: %w", i, err))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if len(m.meta) == 0 {
		return nil, errors.New("no objects")
	}
	return m, nil
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, line := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

func (m *manifests) add(doc []byte) error {
	js, err := yaml.YAMLToJSONStrict(doc) // duplicate keys are errors
	if err != nil {
		return fmt.Errorf("yaml: %w", err)
	}
	var tm metav1.TypeMeta
	if err := kjson.UnmarshalCaseSensitivePreserveInts(js, &tm); err != nil {
		return fmt.Errorf("type meta: %w", err)
	}
	gvk := tm.APIVersion + " " + tm.Kind
	var obj any
	var meta *metav1.ObjectMeta
	var store func() error
	dup := func(kind, name string, exists bool) error {
		if exists {
			return fmt.Errorf("%s %q defined twice", kind, name)
		}
		return nil
	}
	switch gvk {
	case "apps/v1 Deployment":
		o := &appsv1.Deployment{}
		obj, meta = o, &o.ObjectMeta
		store = func() error {
			_, ok := m.deployments[o.Name]
			m.deployments[o.Name] = o
			return dup(tm.Kind, o.Name, ok)
		}
	case "apps/v1 StatefulSet":
		o := &appsv1.StatefulSet{}
		obj, meta = o, &o.ObjectMeta
		store = func() error {
			_, ok := m.statefulSets[o.Name]
			m.statefulSets[o.Name] = o
			return dup(tm.Kind, o.Name, ok)
		}
	case "v1 Service":
		o := &corev1.Service{}
		obj, meta = o, &o.ObjectMeta
		store = func() error {
			_, ok := m.services[o.Name]
			m.services[o.Name] = o
			return dup(tm.Kind, o.Name, ok)
		}
	case "v1 ConfigMap":
		o := &corev1.ConfigMap{}
		obj, meta = o, &o.ObjectMeta
		store = func() error {
			_, ok := m.configMaps[o.Name]
			m.configMaps[o.Name] = o
			return dup(tm.Kind, o.Name, ok)
		}
	case "v1 Secret":
		o := &corev1.Secret{}
		obj, meta = o, &o.ObjectMeta
		store = func() error {
			_, ok := m.secrets[o.Name]
			m.secrets[o.Name] = o
			return dup(tm.Kind, o.Name, ok)
		}
	case "v1 Namespace":
		o := &corev1.Namespace{}
		obj, meta = o, &o.ObjectMeta
		store = func() error {
			_, ok := m.namespaces[o.Name]
			m.namespaces[o.Name] = o
			return dup(tm.Kind, o.Name, ok)
		}
	case "networking.k8s.io/v1 Ingress":
		o := &networkingv1.Ingress{}
		obj, meta = o, &o.ObjectMeta
		store = func() error {
			_, ok := m.ingresses[o.Name]
			m.ingresses[o.Name] = o
			return dup(tm.Kind, o.Name, ok)
		}
	case "autoscaling/v2 HorizontalPodAutoscaler":
		o := &autoscalingv2.HorizontalPodAutoscaler{}
		obj, meta = o, &o.ObjectMeta
		store = func() error {
			_, ok := m.hpas[o.Name]
			m.hpas[o.Name] = o
			return dup(tm.Kind, o.Name, ok)
		}
	case "policy/v1 PodDisruptionBudget":
		o := &policyv1.PodDisruptionBudget{}
		obj, meta = o, &o.ObjectMeta
		store = func() error {
			_, ok := m.pdbs[o.Name]
			m.pdbs[o.Name] = o
			return dup(tm.Kind, o.Name, ok)
		}
	case "networking.k8s.io/v1 NetworkPolicy":
		o := &networkingv1.NetworkPolicy{}
		obj, meta = o, &o.ObjectMeta
		store = func() error {
			_, ok := m.netpols[o.Name]
			m.netpols[o.Name] = o
			return dup(tm.Kind, o.Name, ok)
		}
	default:
		return fmt.Errorf("unexpected object apiVersion %q kind %q (add its type to the test if it is meant to be there)", tm.APIVersion, tm.Kind)
	}
	if err := decodeStrict(js, obj); err != nil {
		var loose struct {
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		_ = kjson.UnmarshalCaseSensitivePreserveInts(js, &loose) // only for the message
		return fmt.Errorf("%s %s/%s: %w", tm.APIVersion, tm.Kind, loose.Metadata.Name, err)
	}
	if meta.Name == "" {
		return fmt.Errorf("%s without metadata.name", gvk)
	}
	m.meta = append(m.meta, objectRef{kind: tm.Kind, meta: meta})
	return store()
}

// decodeStrict decodes JSON the way the API server does: field names match
// case-sensitively, and unknown or duplicate fields are errors.
func decodeStrict(js []byte, obj any) error {
	strictErrs, err := kjson.UnmarshalStrict(js, obj, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
	if err != nil {
		return err
	}
	if len(strictErrs) > 0 {
		return errors.Join(strictErrs...)
	}
	return nil
}

// requireTool returns the path of an executable the test needs. When it is
// missing the test fails in CI (env CI set) and is skipped elsewhere.
func requireTool(t testing.TB, path string) string {
	t.Helper()
	p, err := exec.LookPath(path)
	if err == nil {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is required in CI: %v", path, err)
	}
	t.Skipf("%s not available (%v); it is required when CI is set", path, err)
	return ""
}

var renderCache struct {
	sync.Mutex
	out map[string][]byte
}

// renderOverlay runs `kubectl kustomize overlays/<name>` once per overlay
// and returns the YAML stream.
func renderOverlay(t testing.TB, name string) []byte {
	t.Helper()
	// kubectl kustomize and kustomize build render the same; CI installs
	// kustomize from the Go module proxy when kubectl is missing.
	tool, args := "kubectl", []string{"kustomize"}
	if _, err := exec.LookPath("kubectl"); err != nil {
		if _, err := exec.LookPath("kustomize"); err == nil {
			tool, args = "kustomize", []string{"build"}
		}
	}
	kubectl := requireTool(t, tool)
	renderCache.Lock()
	defer renderCache.Unlock()
	if out, ok := renderCache.out[name]; ok {
		return out
	}
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, kubectl, append(args, filepath.Join("overlays", name))...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("kubectl kustomize overlays/%s: %v\n%s", name, err, stderr.Bytes())
	}
	if renderCache.out == nil {
		renderCache.out = map[string][]byte{}
	}
	renderCache.out[name] = stdout.Bytes()
	return stdout.Bytes()
}

// loadOverlay renders and decodes an overlay; each call returns a fresh,
// independent copy that a test may modify.
func loadOverlay(t testing.TB, name string) *manifests {
	t.Helper()
	m, err := decodeManifests(renderOverlay(t, name))
	if err != nil {
		t.Fatalf("overlays/%s: %v", name, err)
	}
	return m
}

var usageCache struct {
	sync.Mutex
	vars map[string]map[string]usageVar
}

// usageVar is one row of a binary's -h table.
type usageVar struct {
	Name    string
	Default string
}

// binaryVars runs `../bin/<binary> -h` and returns the variables its table
// lists. A missing binary fails the test in CI and skips it elsewhere.
func binaryVars(t testing.TB, binary string) map[string]usageVar {
	t.Helper()
	path := filepath.Join(*binDir, binary)
	if _, err := os.Stat(path); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is missing (make build runs before the tests): %v", path, err)
		}
		t.Skipf("%s not built (run make build); required when CI is set", path)
	}
	usageCache.Lock()
	defer usageCache.Unlock()
	if v, ok := usageCache.vars[binary]; ok {
		return v
	}
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, "-h")
	cmd.Env = []string{} // the table must not depend on this machine's environment
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("%s -h: %v", path, ctx.Err())
	}
	vars, perr := parseUsage(out)
	if perr != nil {
		// -h may exit non-zero (flag.ErrHelp); only the table matters.
		t.Fatalf("%s -h (exit: %v): %v\n%s", path, err, perr, out)
	}
	if usageCache.vars == nil {
		usageCache.vars = map[string]map[string]usageVar{}
	}
	usageCache.vars[binary] = vars
	return vars
}

var (
	usageHeader = regexp.MustCompile(`^VARIABLE\s+DEFAULT\s+MEANING\s*$`)
	varName     = regexp.MustCompile(`^[A-Z][A-Z0-9_]*$`)
)

// parseUsage reads the variable table of a binary's -h output: the rows
// after the header line `VARIABLE  DEFAULT  MEANING`, up to the first blank
// line or the first line whose first column is not a variable name.
func parseUsage(out []byte) (map[string]usageVar, error) {
	lines := strings.Split(string(out), "\n")
	start := -1
	for i, l := range lines {
		if usageHeader.MatchString(strings.TrimSpace(l)) {
			if start >= 0 {
				return nil, errors.New("two VARIABLE tables")
			}
			start = i + 1
		}
	}
	if start < 0 {
		return nil, errors.New("no line `VARIABLE  DEFAULT  MEANING`")
	}
	vars := map[string]usageVar{}
	for _, l := range lines[start:] {
		f := strings.Fields(l)
		if len(f) == 0 || !varName.MatchString(f[0]) {
			break
		}
		v := usageVar{Name: f[0]}
		if len(f) > 1 {
			v.Default = f[1]
		}
		vars[v.Name] = v
	}
	if len(vars) == 0 {
		return nil, errors.New("empty VARIABLE table")
	}
	return vars, nil
}

// sortedKeys returns a map's keys in order, for stable messages.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
