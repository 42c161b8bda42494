package k8s

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// The Prometheus operator's kinds, as far as k8s/monitoring uses them
// (monitoring.coreos.com/v1). Decoded strictly, so a misspelt field fails.
type serviceMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Selector        metav1.LabelSelector `json:"selector"`
		PodTargetLabels []string             `json:"podTargetLabels,omitempty"`
		Endpoints       []struct {
			Port          string `json:"port"`
			Path          string `json:"path"`
			Interval      string `json:"interval"`
			ScrapeTimeout string `json:"scrapeTimeout"`
			Relabelings   []struct {
				SourceLabels []string `json:"sourceLabels"`
				TargetLabel  string   `json:"targetLabel"`
			} `json:"relabelings,omitempty"`
		} `json:"endpoints"`
	} `json:"spec"`
}

type ruleGroups struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []struct {
			Alert       string            `json:"alert"`
			Expr        string            `json:"expr"`
			For         string            `json:"for,omitempty"`
			Labels      map[string]string `json:"labels"`
			Annotations map[string]string `json:"annotations"`
		} `json:"rules"`
	} `json:"groups"`
}

type prometheusRule struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              ruleGroups `json:"spec"`
}

func readRule(t *testing.T) (prometheusRule, []byte) {
	t.Helper()
	b, err := os.ReadFile("monitoring/prometheusrule.yaml")
	if err != nil {
		t.Fatal(err)
	}
	js, err := yaml.YAMLToJSONStrict(b)
	if err != nil {
		t.Fatal(err)
	}
	var r prometheusRule
	if err := decodeStrict(js, &r); err != nil {
		t.Fatalf("prometheusrule.yaml: %v", err)
	}
	spec, err := yaml.Marshal(r.Spec)
	if err != nil {
		t.Fatal(err)
	}
	return r, spec
}

var metricRE = regexp.MustCompile(`scc_[a-z_]+`)

// documentedMetrics returns the metric names docs/metrics.md lists, with
// scc_<role>_ names expanded to each role.
func documentedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile("../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]bool{}
	for _, name := range regexp.MustCompile("`(scc_[a-z_<>]+)`").FindAllStringSubmatch(string(b), -1) {
		n := name[1]
		if strings.Contains(n, "<role>") {
			for _, role := range []string{"state", "broker", "frontend"} {
				m[strings.ReplaceAll(n, "<role>", role)] = true
			}
			continue
		}
		m[n] = true
	}
	return m
}

// ruleMetrics lists the metric names an expression reads, with
// __name__=~"scc_(a|b)_x" expanded.
func ruleMetrics(expr string) []string {
	var out []string
	alt := regexp.MustCompile(`scc_\(([a-z|]+)\)_([a-z_]+)`)
	for _, m := range alt.FindAllStringSubmatch(expr, -1) {
		for _, role := range strings.Split(m[1], "|") {
			out = append(out, "scc_"+role+"_"+m[2])
		}
	}
	out = append(out, metricRE.FindAllString(alt.ReplaceAllString(expr, ""), -1)...)
	return out
}

// TestPrometheusRule: the alert rules the dashboard implies exist, read
// only metrics docs/metrics.md documents, pass `promtool check rules`, and
// fire as k8s/monitoring/rules.test.yaml expects (`promtool test rules`).
func TestPrometheusRule(t *testing.T) {
	r, spec := readRule(t)
	docs := documentedMetrics(t)
	alerts := map[string]bool{}
	for _, g := range r.Spec.Groups {
		for _, rule := range g.Rules {
			alerts[rule.Alert] = true
			if rule.Labels["severity"] == "" || rule.Annotations["summary"] == "" || rule.Annotations["description"] == "" {
				t.Errorf("%s: needs a severity label, a summary and a description", rule.Alert)
			}
			names := ruleMetrics(rule.Expr)
			if len(names) == 0 {
				t.Errorf("%s reads no scc_ metric: %s", rule.Alert, rule.Expr)
			}
			for _, n := range names {
				if !docs[n] {
					t.Errorf("%s reads %s, which docs/metrics.md does not list", rule.Alert, n)
				}
			}
		}
	}
	// What the dashboard shows going wrong, each with an alert.
	for _, a := range []string{"SccSlowConsumerCloses", "SccPublishesDropped", "SccBrokerDrops",
		"SccRingNotCommitted", "SccBrokerLinksDown"} {
		if !alerts[a] {
			t.Errorf("no alert %s", a)
		}
	}

	promtool := requireTool(t, "promtool")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "rules.yaml"), spec, 0o644); err != nil {
		t.Fatal(err)
	}
	tests, err := os.ReadFile("monitoring/rules.test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "rules.test.yaml"), tests, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"check", "rules", "rules.yaml"}, {"test", "rules", "rules.test.yaml"}} {
		ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
		cmd := exec.CommandContext(ctx, promtool, args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// TestMonitoringComponent renders the dev overlay with k8s/monitoring: the
// ServiceMonitor selects the scc-metrics Service by label and scrapes a
// port it has, and that Service reaches the admin port of every sccgo
// workload, which the NetworkPolicies open to the monitoring pods.
func TestMonitoringComponent(t *testing.T) {
	kubectl := requireTool(t, "kubectl")
	abs, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	rel := func(p string) string { // kustomize takes relative paths only
		r, err := filepath.Rel(dir, filepath.Join(abs, p))
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	kust := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: sccgo-dev\n" +
		"resources:\n  - " + rel("overlays/dev") + "\n" +
		"components:\n  - " + rel("monitoring") + "\n"
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(kust), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, kubectl, "kustomize", dir)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("kubectl kustomize: %v\n%s", err, stderr.Bytes())
	}
	var core bytes.Buffer
	var sms []serviceMonitor
	var rules []prometheusRule
	for _, doc := range docSeparator.Split(stdout.String(), -1) {
		if strings.TrimSpace(stripComments(doc)) == "" {
			continue
		}
		js, err := yaml.YAMLToJSONStrict([]byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		var tm metav1.TypeMeta
		if err := kjson.UnmarshalCaseSensitivePreserveInts(js, &tm); err != nil {
			t.Fatal(err)
		}
		switch tm.APIVersion + " " + tm.Kind {
		case "monitoring.coreos.com/v1 ServiceMonitor":
			var sm serviceMonitor
			if err := decodeStrict(js, &sm); err != nil {
				t.Fatalf("ServiceMonitor: %v", err)
			}
			sms = append(sms, sm)
		case "monitoring.coreos.com/v1 PrometheusRule":
			var r prometheusRule
			if err := decodeStrict(js, &r); err != nil {
				t.Fatalf("PrometheusRule: %v", err)
			}
			rules = append(rules, r)
		default:
			core.WriteString("---\n" + doc + "\n")
		}
	}
	m, err := decodeManifests(core.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if len(sms) != 1 || len(rules) != 1 {
		t.Fatalf("%d ServiceMonitors and %d PrometheusRules, want 1 each", len(sms), len(rules))
	}
	sm := sms[0]
	if sm.Namespace != "sccgo-dev" || rules[0].Namespace != "sccgo-dev" {
		t.Errorf("ServiceMonitor in %q, PrometheusRule in %q: want the overlay's namespace", sm.Namespace, rules[0].Namespace)
	}
	var selected []string
	for name, svc := range m.services {
		if !matches(&sm.Spec.Selector, svc.Labels) {
			continue
		}
		selected = append(selected, name)
		for _, ep := range sm.Spec.Endpoints {
			found := false
			for _, p := range svc.Spec.Ports {
				if p.Name == ep.Port {
					found = true
					if p.TargetPort.String() != "admin" {
						t.Errorf("Service %s port %s targets %s, want the pods' admin port", name, p.Name, p.TargetPort.String())
					}
				}
			}
			if !found {
				t.Errorf("ServiceMonitor scrapes port %q, which Service %s lacks", ep.Port, name)
			}
			if ep.Path != "/metrics" {
				t.Errorf("ServiceMonitor path %q, want /metrics", ep.Path)
			}
		}
		// Every workload's pods, each with an admin port.
		for _, w := range m.workloads() {
			if !selectorMapMatches(svc.Spec.Selector, w.template.Labels) {
				t.Errorf("Service %s does not select %s", name, w)
			}
			for _, ct := range w.template.Spec.Containers {
				if _, ok := resolvePort(ct.Ports, intstr.FromString("admin"), corev1.ProtocolTCP); !ok {
					t.Errorf("%s container %s has no admin port", w, ct.Name)
				}
			}
		}
	}
	sort.Strings(selected)
	if len(selected) != 1 || selected[0] != "scc-metrics" {
		t.Errorf("ServiceMonitor selects Services %v, want [scc-metrics]", selected)
	}
}
