package k8s

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"go.uber.org/goleak"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/sccgo/sccgo/internal/config"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// loadExample decodes secret.example.yaml, the Secret prod expects.
func loadExample(t testing.TB) *corev1.Secret {
	t.Helper()
	data, err := os.ReadFile("secret.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m, err := decodeManifests(data)
	if err != nil {
		t.Fatalf("secret.example.yaml: %v", err)
	}
	if len(m.meta) != 1 || len(m.secrets) != 1 {
		t.Fatalf("secret.example.yaml: want exactly one Secret")
	}
	for _, s := range m.secrets {
		return s
	}
	return nil
}

// TestOverlays renders every overlay, decodes it strictly and checks the
// invariants the cluster depends on.
func TestOverlays(t *testing.T) {
	example := loadExample(t)
	for _, want := range overlays {
		t.Run(want.name, func(t *testing.T) {
			m := loadOverlay(t, want.name)
			for _, p := range checkManifests(m, want, example) {
				t.Error(p)
			}
		})
	}
}

// TestEnvVarsReadByBinaries checks that every variable the manifests set
// in a container (env and ConfigMap keys via envFrom) is one the
// container's binary reads, as its -h table says.
func TestEnvVarsReadByBinaries(t *testing.T) {
	for _, want := range overlays {
		t.Run(want.name, func(t *testing.T) {
			m := loadOverlay(t, want.name)
			for _, comp := range components {
				t.Run(comp.binary, func(t *testing.T) {
					vars := map[string]map[string]usageVar{comp.binary: binaryVars(t, comp.binary)}
					for _, p := range checkEnvNames(m, vars) {
						t.Error(p)
					}
				})
			}
		})
	}
}

// TestCheckerCatches breaks the rendered dev overlay in one way at a time
// and expects the checks to notice each.
func TestCheckerCatches(t *testing.T) {
	example := loadExample(t)
	dev := overlays[0]
	frontend := func(m *manifests) *corev1.Container {
		return &m.deployments["scc-frontend"].Spec.Template.Spec.Containers[0]
	}
	broker := func(m *manifests) *corev1.Container {
		return &m.statefulSets["scc-broker"].Spec.Template.Spec.Containers[0]
	}
	cases := []struct {
		name   string
		breaks func(m *manifests)
		want   string
	}{
		{"no readiness probe", func(m *manifests) { frontend(m).ReadinessProbe = nil }, "readinessProbe must be"},
		{"liveness on the wrong path", func(m *manifests) { broker(m).LivenessProbe.HTTPGet.Path = "/health" }, `livenessProbe path "/health"`},
		{"probe on the gossip port", func(m *manifests) { broker(m).ReadinessProbe.HTTPGet.Port = intstr.FromString("gossip-tcp") }, "readinessProbe probes port 7946"},
		{"frontend probe on the main port beside an admin port", func(m *manifests) { frontend(m).LivenessProbe.HTTPGet.Port = intstr.FromString("http") }, "livenessProbe probes port 8000, but the server listens on 8001"},
		{"paced accepts without an admin port", func(m *manifests) {
			for _, cm := range m.configMaps {
				cm.Data["SCC_ADMIN_PORT"] = "0"
			}
			frontend(m).LivenessProbe.HTTPGet.Port = intstr.FromString("http")
			frontend(m).ReadinessProbe.HTTPGet.Port = intstr.FromString("http")
		}, "serve probes on SCC_ADMIN_PORT"},
		{"no admin port", func(m *manifests) {
			for name, cm := range m.configMaps {
				if strings.HasPrefix(name, "scc-broker-config") {
					cm.Data["SCC_ADMIN_PORT"] = "0"
				}
			}
		}, "SCC_ADMIN_PORT is 0: /metrics is served nowhere"},
		{"metrics on the client port", func(m *manifests) {
			for name, cm := range m.configMaps {
				if strings.HasPrefix(name, "scc-frontend-config") {
					cm.Data["SCC_ADMIN_ON_CLIENT_PORT"] = "true"
				}
			}
		}, "SCC_ADMIN_ON_CLIENT_PORT=true serves /metrics on the port clients"},
		{"scrape on the link port", func(m *manifests) {
			m.statefulSets["scc-broker"].Spec.Template.Annotations["prometheus.io/port"] = "8888"
		}, "prometheus.io/port 8888, but /metrics is served on 8889"},
		{"state probe on the link port beside an admin port", func(m *manifests) {
			m.deployments["scc-state"].Spec.Template.Spec.Containers[0].ReadinessProbe.HTTPGet.Port = intstr.FromString("http")
		}, "readinessProbe probes port 7777, but the server listens on 7778"},
		{"no NetworkPolicy", func(m *manifests) { clear(m.netpols) }, "no NetworkPolicy selects its pods"},
		{"NetworkPolicy for other pods", func(m *manifests) {
			m.netpols["scc-state"].Spec.PodSelector.MatchLabels["app.kubernetes.io/component"] = "db"
		}, "Deployment/scc-state: no NetworkPolicy selects its pods"},
		{"broker link port open to everyone", func(m *manifests) { m.netpols["scc-broker"].Spec.Ingress[1].From = nil }, "admits everyone to the link port 8888/TCP"},
		{"state link port open to other namespaces", func(m *manifests) {
			np := m.netpols["scc-state"]
			np.Spec.Ingress[1].From = append(np.Spec.Ingress[1].From, networkingv1.NetworkPolicyPeer{NamespaceSelector: &metav1.LabelSelector{}})
		}, "admits namespaceSelector <none> to the link port 7777/TCP"},
		{"gossip closed to frontends", func(m *manifests) {
			m.netpols["scc-state"].Spec.Ingress[1].From[0].PodSelector.MatchLabels["app.kubernetes.io/component"] = "broker"
		}, "does not admit Deployment/scc-frontend to the gossip port 7946/UDP"},
		{"gossip udp not listed", func(m *manifests) {
			r := &m.netpols["scc-broker"].Spec.Ingress[1]
			r.Ports = r.Ports[:2]
		}, "StatefulSet/scc-broker: NetworkPolicy does not admit Deployment/scc-state to the gossip port 7946/UDP"},
		{"clients kept out", func(m *manifests) {
			m.netpols["scc-frontend"].Spec.Ingress[1].From = []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app.kubernetes.io/name": "sccgo"}}}}
		}, "keeps clients from the client port 8000"},
		{"metrics open to everyone", func(m *manifests) { m.netpols["scc-frontend"].Spec.Ingress[0].From = nil }, "admits everyone to the admin port 8001"},
		{"metrics open to an address block", func(m *manifests) {
			m.netpols["scc-broker"].Spec.Ingress[0].From = []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "0.0.0.0/0"}}}
		}, "admits ipBlock 0.0.0.0/0 to the admin port 8889"},
		{"no cpu limit", func(m *manifests) { delete(broker(m).Resources.Limits, corev1.ResourceCPU) }, "no cpu limits"},
		{"literal auth key", func(m *manifests) {
			c := frontend(m)
			for i := range c.Env {
				if c.Env[i].Name == "SCC_AUTH_KEY" {
					c.Env[i].ValueFrom, c.Env[i].Value = nil, "hunter2"
				}
			}
		}, "SCC_AUTH_KEY must come from a Secret"},
		{"client key in a ConfigMap", func(m *manifests) {
			for name, cm := range m.configMaps {
				if strings.HasPrefix(name, "scc-broker-config") {
					cm.Data["SCC_CLIENT_AUTH_KEY"] = "x"
				}
			}
		}, "SCC_CLIENT_AUTH_KEY is set from ConfigMap"},
		{"missing secret", func(m *manifests) { m.secrets = map[string]*corev1.Secret{} }, "is not in the manifests"},
		{"two state servers", func(m *manifests) { m.deployments["scc-state"].Spec.Replicas = ptrTo[int32](2) }, "replicas: 1 exactly"},
		{"rolling state server", func(m *manifests) { m.deployments["scc-state"].Spec.Strategy.Type = "RollingUpdate" }, "Recreate"},
		{"short frontend grace", func(m *manifests) {
			m.deployments["scc-frontend"].Spec.Template.Spec.TerminationGracePeriodSeconds = ptrTo[int64](10)
		}, "Deployment/scc-frontend: terminationGracePeriodSeconds 10s"},
		{"frontend drain longer than its shutdown", func(m *manifests) {
			for name, cm := range m.configMaps {
				if strings.HasPrefix(name, "scc-frontend-config") {
					cm.Data["SCC_DRAIN_DURATION"] = "1m"
				}
			}
		}, "must cover SCC_DRAIN_DURATION 1m0s"},
		{"short state grace", func(m *manifests) {
			m.deployments["scc-state"].Spec.Template.Spec.TerminationGracePeriodSeconds = ptrTo[int64](5)
		}, "Deployment/scc-state: terminationGracePeriodSeconds 5s"},
		{"broker shutdown shorter than a reshard", func(m *manifests) {
			for name, cm := range m.configMaps {
				if strings.HasPrefix(name, "scc-broker-config") {
					cm.Data["SCC_SHUTDOWN_TIMEOUT"] = "3s"
				}
			}
		}, "cannot cover the state's PREPARE_TIMEOUT"},
		{"service selects nothing", func(m *manifests) { m.services["scc-frontend"].Spec.Selector["app.kubernetes.io/component"] = "web" }, "Service/scc-frontend: selector"},
		{"broker service not headless", func(m *manifests) { m.services["scc-broker"].Spec.ClusterIP = "" }, "headless"},
		{"privilege escalation", func(m *manifests) { broker(m).SecurityContext.AllowPrivilegeEscalation = ptrTo(true) }, "allowPrivilegeEscalation must be false"},
		{"writable root", func(m *manifests) { frontend(m).SecurityContext.ReadOnlyRootFilesystem = nil }, "readOnlyRootFilesystem"},
		{"root user", func(m *manifests) {
			m.statefulSets["scc-broker"].Spec.Template.Spec.SecurityContext.RunAsUser = ptrTo[int64](0)
		}, "runAsUser must be"},
		{"service links", func(m *manifests) { m.deployments["scc-state"].Spec.Template.Spec.EnableServiceLinks = nil }, "enableServiceLinks"},
		{"no spreading", func(m *manifests) { m.statefulSets["scc-broker"].Spec.Template.Spec.TopologySpreadConstraints = nil }, "topologySpreadConstraints or podAntiAffinity"},
		{"exec preStop", func(m *manifests) {
			frontend(m).Lifecycle.PreStop = &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"sleep", "5"}}}
		}, "preStop uses exec"},
		{"state host typo", func(m *manifests) {
			for name, cm := range m.configMaps {
				if strings.HasPrefix(name, "scc-frontend-config") {
					cm.Data["SCC_STATE_SERVER_HOST"] = "scc-stat"
				}
			}
		}, `SCC_STATE_SERVER_HOST host "scc-stat"`},
		{"gossip seed on the wrong port", func(m *manifests) {
			for name, cm := range m.configMaps {
				if strings.HasPrefix(name, "scc-frontend-config") {
					cm.Data["SCC_GOSSIP_SEEDS"] = "scc-broker:8888"
				}
			}
		}, "Service scc-broker has no port 8888/UDP"},
		{"no HPA", func(m *manifests) { clear(m.hpas) }, "no HorizontalPodAutoscaler"},
		{"frontend replicas beside the HPA", func(m *manifests) { m.deployments["scc-frontend"].Spec.Replicas = ptrTo[int32](1) }, "leave replicas unset"},
		{"HPA range", func(m *manifests) { m.hpas["scc-frontend"].Spec.MaxReplicas = 9 }, "replicas 1..9, want 1..2"},
		{"PDB for nobody", func(m *manifests) {
			m.pdbs["scc-frontend"].Spec.Selector.MatchLabels["app.kubernetes.io/component"] = "x"
		}, "no PodDisruptionBudget selects the frontend"},
		{"ingress with short timeouts", func(m *manifests) {
			m.ingresses["scc-frontend"].Annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"] = "60"
		}, "proxy-read-timeout"},
		{"ingress to a missing port", func(m *manifests) {
			m.ingresses["scc-frontend"].Spec.Rules[0].HTTP.Paths[0].Backend.Service.Port.Name = "ws"
		}, `has no port "ws"`},
		{"wrong broker count", func(m *manifests) { m.statefulSets["scc-broker"].Spec.Replicas = ptrTo[int32](5) }, "replicas 5, want 2"},
		{"container port missing", func(m *manifests) { broker(m).Ports = broker(m).Ports[1:] }, "no TCP containerPort 8888"},
		{"no instance id", func(m *manifests) {
			c := broker(m)
			c.Env = c.Env[1:]
		}, "SCC_INSTANCE_ID must come from fieldRef"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := loadOverlay(t, dev.name)
			if ps := checkManifests(m, dev, example); len(ps) != 0 {
				t.Fatalf("the unbroken overlay already fails: %v", ps)
			}
			tc.breaks(m)
			ps := checkManifests(m, dev, example)
			for _, p := range ps {
				if strings.Contains(p, tc.want) {
					return
				}
			}
			t.Errorf("no problem mentions %q; got %q", tc.want, ps)
		})
	}

	t.Run("prod image tag latest", func(t *testing.T) {
		prod := overlays[1]
		m := loadOverlay(t, prod.name)
		m.deployments["scc-state"].Spec.Template.Spec.Containers[0].Image = "sccgo:latest"
		if !containsProblem(checkManifests(m, prod, example), "must be pinned") {
			t.Error("a :latest image in prod went unnoticed")
		}
	})
	t.Run("unread variable", func(t *testing.T) {
		m := loadOverlay(t, dev.name)
		vars := fakeTables(t, m)
		if ps := checkEnvNames(m, vars); len(ps) != 0 {
			t.Fatalf("complete tables already fail: %v", ps)
		}
		delete(vars[binFrontend], "SCC_DRAIN_DURATION")
		if !containsProblem(checkEnvNames(m, vars), "SCC_DRAIN_DURATION (from ConfigMap scc-frontend-config") {
			t.Error("a ConfigMap key the frontend does not read went unnoticed")
		}
		delete(vars[binBroker], "SCC_INSTANCE_ID")
		if !containsProblem(checkEnvNames(m, vars), "SCC_INSTANCE_ID (from env) is not read by scc-broker") {
			t.Error("an env variable the broker does not read went unnoticed")
		}
	})
}

// fakeTables builds -h tables (through config.Usage, as the binaries do)
// holding exactly the variables the manifests set.
func fakeTables(t *testing.T, m *manifests) map[string]map[string]usageVar {
	t.Helper()
	c := &checker{m: m, byBinary: map[string]placed{}}
	out := map[string]map[string]usageVar{}
	for _, w := range m.workloads() {
		ct := &w.template.Spec.Containers[0]
		var vs []config.Var
		for _, name := range c.containerEnv(w, ct).names() {
			vs = append(vs, config.Var{Name: name, Help: "set by the manifests"})
		}
		var buf bytes.Buffer
		config.Usage(&buf, vs)
		table, err := parseUsage(buf.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		out[pathBase(ct.Command[0])] = table
	}
	return out
}

func pathBase(p string) string { return p[strings.LastIndex(p, "/")+1:] }

func containsProblem(ps []string, sub string) bool {
	for _, p := range ps {
		if strings.Contains(p, sub) {
			return true
		}
	}
	return false
}

// TestDecodeStrict checks that the decoder refuses what the API server
// refuses.
func TestDecodeStrict(t *testing.T) {
	const good = `# comment
apiVersion: v1
kind: ConfigMap
metadata:
  name: a
data:
  K: v
---
apiVersion: v1
kind: Service
metadata:
  name: s
spec:
  ports:
    - port: 80
`
	m, err := decodeManifests([]byte(good))
	if err != nil {
		t.Fatalf("valid stream: %v", err)
	}
	if len(m.configMaps) != 1 || len(m.services) != 1 {
		t.Fatalf("decoded %d objects", len(m.meta))
	}
	bad := map[string]string{
		"unknown field": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndatas:\n  K: v\n",
		"nested unknown field": "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\nspec:\n  template:\n    spec:\n" +
			"      containers:\n        - name: c\n          readinesProbe: {}\n",
		"wrong case":      "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  Name: a\n",
		"duplicate field": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  name: b\n",
		"unknown kind":    "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n",
		"old ingress":     "apiVersion: extensions/v1beta1\nkind: Ingress\nmetadata:\n  name: i\n",
		"no name":         "apiVersion: v1\nkind: ConfigMap\ndata: {}\n",
		"twice":           "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n",
		"wrong type":      "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  ports: 80\n",
		"empty":           "# nothing\n",
	}
	for name, doc := range bad {
		if _, err := decodeManifests([]byte(doc)); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
}

// TestParseUsage checks the -h table parser against config.Usage, the
// formatter every binary uses.
func TestParseUsage(t *testing.T) {
	vars := []config.Var{
		{Name: "SOCKETCLUSTER_PORT", Default: "8000", Help: "client port"},
		{Name: "SCC_CLIENT_AUTH_KEY", Default: "", Help: "HS256 key for client tokens"},
		{Name: "SCC_DRAIN_DURATION", Default: "10s", Help: "how long to take closing clients on shutdown"},
	}
	var buf bytes.Buffer
	buf.WriteString("Usage of scc-frontend:\n  -h\thelp\n\nEnvironment:\n")
	config.Usage(&buf, vars)
	buf.WriteString("\nFlags override the environment.\n")
	got, err := parseUsage(buf.Bytes())
	if err != nil {
		t.Fatalf("%v\n%s", err, buf.Bytes())
	}
	if len(got) != len(vars) {
		t.Fatalf("parsed %v from\n%s", got, buf.Bytes())
	}
	for _, v := range vars {
		if _, ok := got[v.Name]; !ok {
			t.Errorf("%s missing from %v", v.Name, got)
		}
	}
	if got["SOCKETCLUSTER_PORT"].Default != "8000" {
		t.Errorf("default %q", got["SOCKETCLUSTER_PORT"].Default)
	}
	for _, out := range []string{"", "usage: nothing here\n", "VARIABLE  DEFAULT  MEANING\n\n"} {
		if _, err := parseUsage([]byte(out)); err == nil {
			t.Errorf("parsed a table from %q", out)
		}
	}
}

func ptrTo[T any](v T) *T { return &v }
