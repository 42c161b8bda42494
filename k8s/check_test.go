package k8s

import (
	"fmt"
	"net"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/sccgo/sccgo/internal/config"
)

// Component roles, named after the binary each one runs.
const (
	binState    = "scc-state"
	binBroker   = "scc-broker"
	binFrontend = "scc-frontend"
)

// component describes what the manifests must provide for one binary.
type component struct {
	binary      string
	kind        string // workload kind
	portVar     string // variable holding the main (HTTP + link) port
	defaultPort int
	// defaultAdminPort is the binary's SCC_ADMIN_PORT default: /metrics
	// (and the state's status page) are served there and, unless
	// SCC_ADMIN_ON_CLIENT_PORT, not on the main port.
	defaultAdminPort int
	// secretVars must come from a Secret (secretKeyRef).
	secretVars []string
	// durationVars must be set explicitly (the grace period arithmetic
	// depends on them).
	durationVars []string
}

var components = []component{
	{
		binary: binState, kind: "Deployment", portVar: "SCC_STATE_SERVER_PORT", defaultPort: 7777, defaultAdminPort: 7778,
		secretVars:   []string{"SCC_AUTH_KEY"},
		durationVars: []string{"SCC_STATE_SERVER_PREPARE_TIMEOUT", "SCC_RESHARD_DRAIN_WINDOW", "SCC_SHUTDOWN_TIMEOUT"},
	},
	{
		binary: binBroker, kind: "StatefulSet", portVar: "SCC_BROKER_SERVER_PORT", defaultPort: 8888, defaultAdminPort: 8889,
		secretVars:   []string{"SCC_AUTH_KEY"},
		durationVars: []string{"SCC_SHUTDOWN_TIMEOUT"},
	},
	{
		binary: binFrontend, kind: "Deployment", portVar: "SOCKETCLUSTER_PORT", defaultPort: 8000, defaultAdminPort: 8001,
		secretVars:   []string{"SCC_AUTH_KEY", "SCC_CLIENT_AUTH_KEY"},
		durationVars: []string{"SCC_DRAIN_DURATION", "SCC_SHUTDOWN_TIMEOUT"},
	},
}

const (
	runAsUser         = 65532
	defaultGossipPort = 7946
	defaultStatePort  = 7777
	// graceMargin is the slack a grace period must leave beyond the drain
	// it covers (scheduling of SIGTERM, final flushes).
	graceMargin = 5 * time.Second
	// wsTimeout is the least proxy read/send timeout for WebSockets (s).
	wsTimeout = 3600
)

// overlayWant is what one overlay must set.
type overlayWant struct {
	name             string
	namespace        string
	frontendReplicas int32 // the HPA's minReplicas
	frontendMax      int32 // the HPA's maxReplicas
	brokerReplicas   int32
	pdbMinAvailable  bool // the frontend PDB uses minAvailable
	pinnedImage      bool // no :latest or untagged images
	// externalSecret: Secrets referenced but not rendered must be the one
	// documented in secret.example.yaml (the operator creates it).
	externalSecret bool
}

var overlays = []overlayWant{
	{name: "dev", namespace: "sccgo-dev", frontendReplicas: 1, frontendMax: 2, brokerReplicas: 2},
	{
		name: "prod", namespace: "sccgo", frontendReplicas: 3, frontendMax: 20, brokerReplicas: 3,
		pdbMinAvailable: true, pinnedImage: true, externalSecret: true,
	},
}

// workload is a Deployment or StatefulSet, seen through what they share.
type workload struct {
	kind, name string
	replicas   *int32
	selector   *metav1.LabelSelector
	template   *corev1.PodTemplateSpec
}

func (w workload) String() string { return w.kind + "/" + w.name }

func (m *manifests) workloads() []workload {
	var ws []workload
	for _, name := range sortedKeys(m.deployments) {
		d := m.deployments[name]
		ws = append(ws, workload{"Deployment", name, d.Spec.Replicas, d.Spec.Selector, &d.Spec.Template})
	}
	for _, name := range sortedKeys(m.statefulSets) {
		s := m.statefulSets[name]
		ws = append(ws, workload{"StatefulSet", name, s.Spec.Replicas, s.Spec.Selector, &s.Spec.Template})
	}
	return ws
}

// checker collects every problem instead of stopping at the first.
type checker struct {
	m        *manifests
	want     overlayWant
	example  *corev1.Secret // secret.example.yaml
	problems []string
	// byBinary maps a binary to the workload and container running it.
	byBinary map[string]placed
}

type placed struct {
	w workload
	c *corev1.Container
}

func (c *checker) errorf(format string, args ...any) {
	c.problems = append(c.problems, fmt.Sprintf(format, args...))
}

// checkManifests returns every invariant the rendered overlay breaks.
func checkManifests(m *manifests, want overlayWant, example *corev1.Secret) []string {
	c := &checker{m: m, want: want, example: example, byBinary: map[string]placed{}}
	c.checkNamespaces()
	for _, w := range m.workloads() {
		c.checkWorkload(w)
	}
	for _, comp := range components {
		if _, ok := c.byBinary[comp.binary]; !ok {
			c.errorf("no workload runs %s", comp.binary)
		}
	}
	if len(c.byBinary) == len(components) {
		c.checkState()
		c.checkBroker()
		c.checkFrontend()
		c.checkGrace()
		c.checkClusterAddresses()
		c.checkNetworkPolicies()
	}
	c.checkServices()
	c.checkPDBs()
	return c.problems
}

func (c *checker) checkNamespaces() {
	for _, o := range c.m.meta {
		if o.kind == "Namespace" {
			if o.meta.Name != c.want.namespace {
				c.errorf("Namespace %q: want %q", o.meta.Name, c.want.namespace)
			}
			continue
		}
		if o.meta.Namespace != c.want.namespace {
			c.errorf("%s/%s: namespace %q, want %q", o.kind, o.meta.Name, o.meta.Namespace, c.want.namespace)
		}
	}
}

// matches reports whether a matchLabels-only selector selects labels.
func matches(sel *metav1.LabelSelector, labels map[string]string) bool {
	if sel == nil || len(sel.MatchLabels) == 0 || len(sel.MatchExpressions) > 0 {
		return false
	}
	return selectorMapMatches(sel.MatchLabels, labels)
}

func selectorMapMatches(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// env is a container's effective environment, by source.
type env struct {
	literal   map[string]string // value: and ConfigMap keys via envFrom
	fieldRef  map[string]string // fieldPath
	secretRef map[string]*corev1.SecretKeySelector
	other     map[string]bool   // any other valueFrom
	fromCM    map[string]string // variable -> ConfigMap it came from
}

func (c *checker) containerEnv(w workload, ct *corev1.Container) env {
	e := env{
		literal: map[string]string{}, fieldRef: map[string]string{},
		secretRef: map[string]*corev1.SecretKeySelector{}, other: map[string]bool{},
		fromCM: map[string]string{},
	}
	for _, src := range ct.EnvFrom {
		switch {
		case src.ConfigMapRef != nil:
			cm, ok := c.m.configMaps[src.ConfigMapRef.Name]
			if !ok {
				c.errorf("%s: envFrom ConfigMap %q is not in the manifests", w, src.ConfigMapRef.Name)
				continue
			}
			for k, v := range cm.Data {
				e.literal[src.Prefix+k] = v
				e.fromCM[src.Prefix+k] = cm.Name
			}
			for k := range cm.BinaryData {
				c.errorf("%s: ConfigMap %s has binaryData %q, which cannot be an environment variable", w, cm.Name, k)
			}
		default:
			c.errorf("%s: envFrom must name a ConfigMap (keys come from secretKeyRef, one by one)", w)
		}
	}
	for _, v := range ct.Env {
		delete(e.literal, v.Name)
		delete(e.fromCM, v.Name)
		switch {
		case v.ValueFrom == nil:
			e.literal[v.Name] = v.Value
		case v.ValueFrom.FieldRef != nil:
			e.fieldRef[v.Name] = v.ValueFrom.FieldRef.FieldPath
		case v.ValueFrom.SecretKeyRef != nil:
			e.secretRef[v.Name] = v.ValueFrom.SecretKeyRef
		default:
			e.other[v.Name] = true
		}
	}
	return e
}

// names returns every variable set in the container, by name.
func (e env) names() []string {
	var out []string
	for _, m := range []map[string]bool{keys(e.literal), keys(e.fieldRef), keys(e.secretRef), e.other} {
		for k := range m {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func keys[V any](m map[string]V) map[string]bool {
	out := make(map[string]bool, len(m))
	for k := range m {
		out[k] = true
	}
	return out
}

func (c *checker) checkWorkload(w workload) {
	tpl := w.template
	pod := &tpl.Spec
	if !matches(w.selector, tpl.Labels) {
		c.errorf("%s: selector %v does not select its own pod labels %v", w, w.selector, tpl.Labels)
	}
	if pod.EnableServiceLinks == nil || *pod.EnableServiceLinks {
		c.errorf("%s: set enableServiceLinks: false (service links inject SCC_STATE_PORT, SCC_BROKER_PORT, ... beside the variables sccgo reads)", w)
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		c.errorf("%s: set automountServiceAccountToken: false (sccgo does not call the API server)", w)
	}
	if pod.TerminationGracePeriodSeconds == nil {
		c.errorf("%s: terminationGracePeriodSeconds not set", w)
	}
	c.checkSpread(w)
	if len(pod.InitContainers) > 0 || len(pod.EphemeralContainers) > 0 {
		c.errorf("%s: unexpected init or ephemeral containers", w)
	}
	if len(pod.Containers) != 1 {
		c.errorf("%s: want exactly one container, have %d", w, len(pod.Containers))
	}
	for i := range pod.Containers {
		c.checkContainer(w, &pod.Containers[i])
	}
}

func (c *checker) checkSpread(w workload) {
	pod := &w.template.Spec
	spread := len(pod.TopologySpreadConstraints) > 0
	for _, tsc := range pod.TopologySpreadConstraints {
		if !matches(tsc.LabelSelector, w.template.Labels) {
			c.errorf("%s: topology spread constraint on %s does not select the workload's own pods", w, tsc.TopologyKey)
		}
	}
	anti := pod.Affinity != nil && pod.Affinity.PodAntiAffinity != nil &&
		(len(pod.Affinity.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution) > 0 ||
			len(pod.Affinity.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution) > 0)
	if !spread && !anti {
		c.errorf("%s: needs topologySpreadConstraints or podAntiAffinity", w)
	}
}

func (c *checker) checkContainer(w workload, ct *corev1.Container) {
	name := fmt.Sprintf("%s container %s", w, ct.Name)
	if len(ct.Command) == 0 {
		c.errorf("%s: command must name the binary (one image holds them all)", name)
		return
	}
	binary := path.Base(ct.Command[0])
	comp, ok := componentFor(binary)
	if !ok {
		c.errorf("%s: command %q runs no known binary", name, ct.Command[0])
		return
	}
	if comp.kind != w.kind {
		c.errorf("%s: %s must run in a %s, not a %s", name, binary, comp.kind, w.kind)
	}
	if prev, dup := c.byBinary[binary]; dup {
		c.errorf("%s: %s already runs in %s", name, binary, prev.w)
	}
	c.byBinary[binary] = placed{w, ct}

	c.checkImage(name, ct.Image)
	e := c.containerEnv(w, ct)
	c.checkEnv(name, comp, e)

	mainPort := c.intVar(name, e, comp.portVar, comp.defaultPort)
	if !hasPort(ct.Ports, mainPort, corev1.ProtocolTCP) {
		c.errorf("%s: %s=%d but no TCP containerPort %d", name, comp.portVar, mainPort, mainPort)
	}
	gossip := c.intVar(name, e, "SCC_GOSSIP_PORT", defaultGossipPort)
	for _, proto := range []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP} {
		if !hasPort(ct.Ports, gossip, proto) {
			c.errorf("%s: gossip port %d/%s not declared", name, gossip, proto)
		}
	}
	// Every binary serves /healthz, /readyz and /metrics on its admin port
	// (SCC_ADMIN_PORT) and only /healthz and /readyz on its main port;
	// probes and scrapes go to the admin port.
	probePort, metricsPort := mainPort, 0
	if admin := c.intVar(name, e, "SCC_ADMIN_PORT", comp.defaultAdminPort); admin != 0 {
		probePort, metricsPort = admin, admin
		if !hasPort(ct.Ports, admin, corev1.ProtocolTCP) {
			c.errorf("%s: SCC_ADMIN_PORT=%d but no TCP containerPort %d", name, admin, admin)
		}
	}
	if b, ok := config.ParseBool(e.literal["SCC_ADMIN_ON_CLIENT_PORT"]); ok && b {
		c.errorf("%s: SCC_ADMIN_ON_CLIENT_PORT=%s serves /metrics on the port clients and nodes reach; scrape the admin port", name, e.literal["SCC_ADMIN_ON_CLIENT_PORT"])
		if metricsPort == 0 {
			metricsPort = mainPort
		}
	}
	if metricsPort == 0 {
		c.errorf("%s: SCC_ADMIN_PORT is 0: /metrics is served nowhere", name)
	}
	if a := w.template.Annotations["prometheus.io/port"]; a != "" && a != strconv.Itoa(metricsPort) {
		c.errorf("%s: prometheus.io/port %s, but /metrics is served on %d", name, a, metricsPort)
	}
	if binary == binFrontend {
		// Paced accepts queue everything on the main port, probes
		// included: a reconnect storm would fail the liveness probe.
		if c.intVar(name, e, "SCC_MAX_HANDSHAKES_PER_SECOND", 0) > 0 && e.literal["SCC_HANDSHAKE_QUEUE"] != "0" && probePort == mainPort {
			c.errorf("%s: SCC_MAX_HANDSHAKES_PER_SECOND paces the main port's accepts; serve probes on SCC_ADMIN_PORT", name)
		}
	}
	c.checkProbe(name, "readinessProbe", ct.ReadinessProbe, "/readyz", ct.Ports, probePort)
	c.checkProbe(name, "livenessProbe", ct.LivenessProbe, "/healthz", ct.Ports, probePort)
	c.checkResources(name, ct.Resources)
	c.checkSecurity(name, &w.template.Spec, ct)
	if ct.Lifecycle != nil {
		for hook, h := range map[string]*corev1.LifecycleHandler{"preStop": ct.Lifecycle.PreStop, "postStart": ct.Lifecycle.PostStart} {
			if h != nil && h.Exec != nil {
				c.errorf("%s: %s uses exec, but the image has no shell or tools (use sleep)", name, hook)
			}
		}
	}
}

func componentFor(binary string) (component, bool) {
	for _, comp := range components {
		if comp.binary == binary {
			return comp, true
		}
	}
	return component{}, false
}

func (c *checker) checkImage(name, image string) {
	if image == "" {
		c.errorf("%s: no image", name)
		return
	}
	ref := image
	if i := strings.LastIndex(ref, "@"); i >= 0 {
		return // pinned by digest
	}
	tag := ""
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		ref, tag = ref[:i], ref[i+1:]
	}
	if path.Base(ref) != "sccgo" {
		c.errorf("%s: image %q is not the sccgo image", name, image)
	}
	if c.want.pinnedImage && (tag == "" || tag == "latest") {
		c.errorf("%s: image %q must be pinned to a version in %s", name, image, c.want.name)
	}
}

func (c *checker) checkEnv(name string, comp component, e env) {
	for _, v := range comp.secretVars {
		ref, ok := e.secretRef[v]
		if !ok {
			c.errorf("%s: %s must come from a Secret (secretKeyRef)", name, v)
			continue
		}
		c.checkSecretRef(name, v, ref)
	}
	for _, v := range e.names() {
		if strings.HasSuffix(v, "_KEY") {
			if _, ok := e.secretRef[v]; !ok {
				src := "a literal value"
				if cm, ok := e.fromCM[v]; ok {
					src = "ConfigMap " + cm
				}
				c.errorf("%s: %s is set from %s; keys come from a Secret", name, v, src)
			}
		}
	}
	if len(e.fromCM) == 0 {
		c.errorf("%s: tunables must come from a ConfigMap (envFrom)", name)
	}
	if e.fieldRef["SCC_INSTANCE_IP"] != "status.podIP" {
		c.errorf("%s: SCC_INSTANCE_IP must come from fieldRef status.podIP", name)
	}
	if comp.binary == binBroker && e.fieldRef["SCC_INSTANCE_ID"] != "metadata.name" {
		c.errorf("%s: SCC_INSTANCE_ID must come from fieldRef metadata.name (the broker's stable identity)", name)
	}
	for _, v := range comp.durationVars {
		if _, ok := e.literal[v]; !ok {
			c.errorf("%s: %s must be set explicitly (the grace period depends on it)", name, v)
		}
	}
}

func (c *checker) checkSecretRef(name, v string, ref *corev1.SecretKeySelector) {
	if ref.Optional != nil && *ref.Optional {
		c.errorf("%s: %s secretKeyRef must not be optional", name, v)
	}
	if s, ok := c.m.secrets[ref.Name]; ok {
		_, inData := s.Data[ref.Key]
		_, inString := s.StringData[ref.Key]
		if !inData && !inString {
			c.errorf("%s: %s: Secret %s has no key %q", name, v, ref.Name, ref.Key)
		}
		return
	}
	if !c.want.externalSecret {
		c.errorf("%s: %s: Secret %q is not in the manifests", name, v, ref.Name)
		return
	}
	if c.example == nil || c.example.Name != ref.Name {
		c.errorf("%s: %s: external Secret %q is not the one secret.example.yaml documents", name, v, ref.Name)
		return
	}
	if _, ok := c.example.StringData[ref.Key]; !ok {
		c.errorf("%s: %s: secret.example.yaml has no key %q", name, v, ref.Key)
	}
}

// intVar returns an integer variable's value, or def when it is unset.
func (c *checker) intVar(name string, e env, v string, def int) int {
	s, ok := e.literal[v]
	if !ok {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		c.errorf("%s: %s=%q is not an integer", name, v, s)
		return def
	}
	return n
}

// durationVar returns a duration variable's value (0 when unset; the
// caller has checked it is set).
func (c *checker) durationVar(name string, e env, v string) time.Duration {
	s, ok := e.literal[v]
	if !ok {
		return 0
	}
	d, err := config.ParseDuration(s)
	if err != nil {
		c.errorf("%s: %s=%q: %v", name, v, s, err)
	}
	return d
}

func hasPort(ports []corev1.ContainerPort, n int, proto corev1.Protocol) bool {
	return slices.ContainsFunc(ports, func(p corev1.ContainerPort) bool {
		return int(p.ContainerPort) == n && protocolOf(p.Protocol) == proto
	})
}

func protocolOf(p corev1.Protocol) corev1.Protocol {
	if p == "" {
		return corev1.ProtocolTCP
	}
	return p
}

// resolvePort returns the container port number an IntOrString names.
func resolvePort(ports []corev1.ContainerPort, p intstr.IntOrString, proto corev1.Protocol) (int, bool) {
	for _, cp := range ports {
		if protocolOf(cp.Protocol) != proto {
			continue
		}
		if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
			return int(cp.ContainerPort), true
		}
	}
	return 0, false
}

func (c *checker) checkProbe(name, which string, p *corev1.Probe, wantPath string, ports []corev1.ContainerPort, mainPort int) {
	if p == nil || p.HTTPGet == nil {
		c.errorf("%s: %s must be an httpGet on %s", name, which, wantPath)
		return
	}
	if p.HTTPGet.Path != wantPath {
		c.errorf("%s: %s path %q, want %q", name, which, p.HTTPGet.Path, wantPath)
	}
	port, ok := resolvePort(ports, p.HTTPGet.Port, corev1.ProtocolTCP)
	if !ok {
		c.errorf("%s: %s port %s is not a declared container port", name, which, p.HTTPGet.Port.String())
	} else if port != mainPort {
		c.errorf("%s: %s probes port %d, but the server listens on %d", name, which, port, mainPort)
	}
}

func (c *checker) checkResources(name string, r corev1.ResourceRequirements) {
	for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, okReq := r.Requests[res]
		lim, okLim := r.Limits[res]
		if !okReq || req.IsZero() {
			c.errorf("%s: no %s request", name, res)
		}
		if !okLim || lim.IsZero() {
			c.errorf("%s: no %s limits", name, res)
		}
		if okReq && okLim && req.Cmp(lim) > 0 {
			c.errorf("%s: %s request %s above its limit %s", name, res, req.String(), lim.String())
		}
	}
}

func (c *checker) checkSecurity(name string, pod *corev1.PodSpec, ct *corev1.Container) {
	psc := pod.SecurityContext
	if psc == nil {
		psc = &corev1.PodSecurityContext{}
	}
	sc := ct.SecurityContext
	if sc == nil {
		c.errorf("%s: no securityContext", name)
		sc = &corev1.SecurityContext{}
	}
	isTrue := func(b *bool) bool { return b != nil && *b }
	if !isTrue(firstNonNil(sc.RunAsNonRoot, psc.RunAsNonRoot)) {
		c.errorf("%s: runAsNonRoot must be true", name)
	}
	if u := firstNonNil(sc.RunAsUser, psc.RunAsUser); u == nil || *u != runAsUser {
		c.errorf("%s: runAsUser must be %d (distroless nonroot)", name, runAsUser)
	}
	if !isTrue(sc.ReadOnlyRootFilesystem) {
		c.errorf("%s: readOnlyRootFilesystem must be true", name)
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		c.errorf("%s: allowPrivilegeEscalation must be false", name)
	}
	if isTrue(sc.Privileged) {
		c.errorf("%s: must not be privileged", name)
	}
	if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		c.errorf("%s: capabilities must drop ALL", name)
	} else if len(sc.Capabilities.Add) > 0 {
		c.errorf("%s: adds capabilities %v", name, sc.Capabilities.Add)
	}
	seccomp := firstNonNil(sc.SeccompProfile, psc.SeccompProfile)
	if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
		c.errorf("%s: seccompProfile must be RuntimeDefault", name)
	}
}

func firstNonNil[T any](ps ...*T) *T {
	for _, p := range ps {
		if p != nil {
			return p
		}
	}
	return nil
}

// podSelectedBy returns the workloads whose pods a label selector map
// selects.
func (c *checker) podSelectedBy(sel map[string]string) []workload {
	var out []workload
	for _, w := range c.m.workloads() {
		if selectorMapMatches(sel, w.template.Labels) {
			out = append(out, w)
		}
	}
	return out
}

func (c *checker) checkState() {
	p := c.byBinary[binState]
	if p.w.kind != "Deployment" {
		return
	}
	if p.w.replicas == nil || *p.w.replicas != 1 {
		c.errorf("%s: the state server needs replicas: 1 exactly", p.w)
	}
	d := c.m.deployments[p.w.name]
	if d.Spec.Strategy.Type != "Recreate" {
		c.errorf("%s: strategy must be Recreate (never two state servers)", p.w)
	}
}

func (c *checker) checkBroker() {
	p := c.byBinary[binBroker]
	if p.w.kind != "StatefulSet" {
		return
	}
	if p.w.replicas == nil || *p.w.replicas != c.want.brokerReplicas {
		c.errorf("%s: replicas %v, want %d in %s", p.w, deref(p.w.replicas), c.want.brokerReplicas, c.want.name)
	}
	s := c.m.statefulSets[p.w.name]
	svc, ok := c.m.services[s.Spec.ServiceName]
	if !ok {
		c.errorf("%s: serviceName %q is not a Service in the manifests", p.w, s.Spec.ServiceName)
		return
	}
	if svc.Spec.ClusterIP != corev1.ClusterIPNone {
		c.errorf("Service/%s: the broker service must be headless (clusterIP: None)", svc.Name)
	}
	if !svc.Spec.PublishNotReadyAddresses {
		c.errorf("Service/%s: set publishNotReadyAddresses so gossip seeds resolve to joining brokers", svc.Name)
	}
	if !selectorMapMatches(svc.Spec.Selector, p.w.template.Labels) {
		c.errorf("Service/%s: selector does not select the broker pods", svc.Name)
	}
}

func (c *checker) checkFrontend() {
	p := c.byBinary[binFrontend]
	if p.w.kind != "Deployment" {
		return
	}
	if p.w.replicas != nil {
		c.errorf("%s: leave replicas unset: the HorizontalPodAutoscaler owns the count, and every apply would reset it", p.w)
	}
	labels := p.w.template.Labels

	// Service in front of the pods, on the main port.
	e := c.containerEnv(p.w, p.c)
	mainPort := c.intVar(p.w.String(), e, "SOCKETCLUSTER_PORT", 8000)
	var svcs []string
	for _, name := range sortedKeys(c.m.services) {
		svc := c.m.services[name]
		if selectorMapMatches(svc.Spec.Selector, labels) {
			for _, sp := range svc.Spec.Ports {
				if n, ok := resolvePort(p.c.Ports, sp.TargetPort, protocolOf(sp.Protocol)); ok && n == mainPort {
					svcs = append(svcs, name)
				}
			}
		}
	}
	if len(svcs) == 0 {
		c.errorf("%s: no Service selects the frontend pods on port %d", p.w, mainPort)
	}

	// Ingress to one of those Services.
	ingressed := false
	for _, name := range sortedKeys(c.m.ingresses) {
		ing := c.m.ingresses[name]
		for _, key := range []string{"nginx.ingress.kubernetes.io/proxy-read-timeout", "nginx.ingress.kubernetes.io/proxy-send-timeout"} {
			v, err := strconv.Atoi(ing.Annotations[key])
			if err != nil || v < wsTimeout {
				c.errorf("Ingress/%s: %s=%q; WebSockets need at least %d", name, key, ing.Annotations[key], wsTimeout)
			}
		}
		for _, rule := range ing.Spec.Rules {
			if rule.HTTP == nil {
				continue
			}
			for _, hp := range rule.HTTP.Paths {
				b := hp.Backend.Service
				if b == nil {
					c.errorf("Ingress/%s: path %s has no service backend", name, hp.Path)
					continue
				}
				svc, ok := c.m.services[b.Name]
				if !ok {
					c.errorf("Ingress/%s: backend Service %q is not in the manifests", name, b.Name)
					continue
				}
				if !slices.ContainsFunc(svc.Spec.Ports, func(sp corev1.ServicePort) bool {
					return (b.Port.Name != "" && sp.Name == b.Port.Name) || (b.Port.Number != 0 && sp.Port == b.Port.Number)
				}) {
					c.errorf("Ingress/%s: Service %s has no port %q/%d", name, b.Name, b.Port.Name, b.Port.Number)
					continue
				}
				if slices.Contains(svcs, b.Name) {
					ingressed = true
				}
			}
		}
	}
	if !ingressed {
		c.errorf("%s: no Ingress routes to the frontend Service", p.w)
	}

	// HPA on CPU.
	scaled := false
	for _, name := range sortedKeys(c.m.hpas) {
		h := c.m.hpas[name]
		ref := h.Spec.ScaleTargetRef
		if ref.Kind != "Deployment" || ref.Name != p.w.name || ref.APIVersion != "apps/v1" {
			c.errorf("HorizontalPodAutoscaler/%s: targets %s %s/%s, not the frontend Deployment", name, ref.APIVersion, ref.Kind, ref.Name)
			continue
		}
		scaled = true
		cpu := slices.ContainsFunc(h.Spec.Metrics, func(ms autoscalingv2.MetricSpec) bool {
			return ms.Resource != nil && ms.Resource.Name == corev1.ResourceCPU
		})
		if !cpu {
			c.errorf("HorizontalPodAutoscaler/%s: no CPU resource metric", name)
		}
		lo := deref(h.Spec.MinReplicas)
		if lo < 1 || lo > h.Spec.MaxReplicas {
			c.errorf("HorizontalPodAutoscaler/%s: replicas %d..%d", name, lo, h.Spec.MaxReplicas)
		}
		if lo != c.want.frontendReplicas || h.Spec.MaxReplicas != c.want.frontendMax {
			c.errorf("HorizontalPodAutoscaler/%s: replicas %d..%d, want %d..%d in %s", name, lo, h.Spec.MaxReplicas, c.want.frontendReplicas, c.want.frontendMax, c.want.name)
		}
	}
	if !scaled {
		c.errorf("%s: no HorizontalPodAutoscaler", p.w)
	}

	// PDB.
	budgeted := false
	for _, name := range sortedKeys(c.m.pdbs) {
		pdb := c.m.pdbs[name]
		if !matches(pdb.Spec.Selector, labels) {
			continue
		}
		budgeted = true
		if c.want.pdbMinAvailable && pdb.Spec.MinAvailable == nil {
			c.errorf("PodDisruptionBudget/%s: use minAvailable in %s", name, c.want.name)
		}
	}
	if !budgeted {
		c.errorf("%s: no PodDisruptionBudget selects the frontend pods", p.w)
	}
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// checkGrace checks that each grace period covers the shutdown it must
// allow: the preStop sleep, then what the binary does on SIGTERM.
func (c *checker) checkGrace() {
	envOf := func(bin string) (placed, env) {
		p := c.byBinary[bin]
		return p, c.containerEnv(p.w, p.c)
	}
	grace := func(p placed) time.Duration {
		return time.Duration(deref(p.w.template.Spec.TerminationGracePeriodSeconds)) * time.Second
	}
	preStop := func(p placed) time.Duration {
		if l := p.c.Lifecycle; l != nil && l.PreStop != nil && l.PreStop.Sleep != nil {
			return time.Duration(l.PreStop.Sleep.Seconds) * time.Second
		}
		return 0
	}

	// Frontend: preStop, then SIGTERM starts a shutdown bounded as a whole
	// by SCC_SHUTDOWN_TIMEOUT, which paces the 1001 closes of its clients
	// over SCC_DRAIN_DURATION and then closes links.
	fp, fe := envOf(binFrontend)
	drain := c.durationVar(fp.w.String(), fe, "SCC_DRAIN_DURATION")
	shutdown := c.durationVar(fp.w.String(), fe, "SCC_SHUTDOWN_TIMEOUT")
	if drain+graceMargin > shutdown {
		c.errorf("%s: SCC_SHUTDOWN_TIMEOUT %v must cover SCC_DRAIN_DURATION %v + %v", fp.w, shutdown, drain, graceMargin)
	}
	need := preStop(fp) + shutdown + graceMargin
	if g := grace(fp); g < need {
		c.errorf("%s: terminationGracePeriodSeconds %v is under preStop + SCC_SHUTDOWN_TIMEOUT + %v = %v", fp.w, g, graceMargin, need)
	}

	// Broker: the reshard out (prepare, commit, drain window) runs inside
	// SCC_SHUTDOWN_TIMEOUT, which must leave room for the state server's
	// PREPARE_TIMEOUT + RESHARD_DRAIN_WINDOW.
	bp, be := envOf(binBroker)
	shutdown = c.durationVar(bp.w.String(), be, "SCC_SHUTDOWN_TIMEOUT")
	need = preStop(bp) + shutdown + graceMargin
	if g := grace(bp); g < need {
		c.errorf("%s: terminationGracePeriodSeconds %v is under preStop + SCC_SHUTDOWN_TIMEOUT + %v = %v", bp.w, g, graceMargin, need)
	}
	sp, se := envOf(binState)
	reshard := c.durationVar(sp.w.String(), se, "SCC_STATE_SERVER_PREPARE_TIMEOUT") +
		c.durationVar(sp.w.String(), se, "SCC_RESHARD_DRAIN_WINDOW")
	if shutdown < reshard+graceMargin {
		c.errorf("%s: SCC_SHUTDOWN_TIMEOUT %v cannot cover the state's PREPARE_TIMEOUT + RESHARD_DRAIN_WINDOW (%v) + %v", bp.w, shutdown, reshard, graceMargin)
	}

	// State: its own bounded shutdown.
	need = preStop(sp) + c.durationVar(sp.w.String(), se, "SCC_SHUTDOWN_TIMEOUT") + graceMargin
	if g := grace(sp); g < need {
		c.errorf("%s: terminationGracePeriodSeconds %v is under preStop + SCC_SHUTDOWN_TIMEOUT + %v = %v", sp.w, g, graceMargin, need)
	}
}

// checkClusterAddresses checks that SCC_STATE_SERVER_HOST and
// SCC_GOSSIP_SEEDS name Services that lead to the right pods and ports.
func (c *checker) checkClusterAddresses() {
	sp := c.byBinary[binState]
	se := c.containerEnv(sp.w, sp.c)
	statePort := c.intVar(sp.w.String(), se, "SCC_STATE_SERVER_PORT", defaultStatePort)
	for _, comp := range components {
		p := c.byBinary[comp.binary]
		e := c.containerEnv(p.w, p.c)
		name := p.w.String()
		if comp.binary != binState {
			host, ok := e.literal["SCC_STATE_SERVER_HOST"]
			if !ok {
				c.errorf("%s: SCC_STATE_SERVER_HOST not set", name)
			} else {
				port := c.intVar(name, e, "SCC_STATE_SERVER_PORT", defaultStatePort)
				c.checkServiceAddr(name, "SCC_STATE_SERVER_HOST", host, port, corev1.ProtocolTCP, sp, statePort)
			}
		}
		seeds, ok := e.literal["SCC_GOSSIP_SEEDS"]
		if !ok {
			continue
		}
		for _, seed := range config.SplitList(seeds) {
			host, portStr, err := net.SplitHostPort(seed)
			if err != nil {
				c.errorf("%s: SCC_GOSSIP_SEEDS entry %q: %v", name, seed, err)
				continue
			}
			port, err := strconv.Atoi(portStr)
			if err != nil {
				c.errorf("%s: SCC_GOSSIP_SEEDS entry %q: bad port", name, seed)
				continue
			}
			svc := c.serviceByHost(host)
			if svc == nil {
				c.errorf("%s: SCC_GOSSIP_SEEDS entry %q is not a Service in namespace %s", name, seed, c.want.namespace)
				continue
			}
			for _, proto := range []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP} {
				targets := c.podSelectedBy(svc.Spec.Selector)
				if len(targets) == 0 {
					break // reported by checkServices
				}
				for _, t := range targets {
					tp := c.placedIn(t)
					if tp == nil {
						continue
					}
					te := c.containerEnv(tp.w, tp.c)
					c.checkServiceAddr(name, "SCC_GOSSIP_SEEDS", host, port, proto, *tp, c.intVar(t.String(), te, "SCC_GOSSIP_PORT", defaultGossipPort))
				}
			}
		}
	}
}

func (c *checker) placedIn(w workload) *placed {
	for _, p := range c.byBinary {
		if p.w.kind == w.kind && p.w.name == w.name {
			return &p
		}
	}
	return nil
}

// serviceByHost finds the Service a DNS name inside the namespace means:
// "svc", "svc.ns", "svc.ns.svc" or "svc.ns.svc.cluster.local".
func (c *checker) serviceByHost(host string) *corev1.Service {
	parts := strings.Split(strings.TrimSuffix(host, "."), ".")
	switch {
	case len(parts) == 1:
	case parts[1] != c.want.namespace:
		return nil
	case len(parts) == 2, len(parts) >= 3 && parts[2] == "svc":
	default:
		return nil
	}
	return c.m.services[parts[0]]
}

// checkServiceAddr checks that host:port reaches target's wantPort.
func (c *checker) checkServiceAddr(name, v, host string, port int, proto corev1.Protocol, target placed, wantPort int) {
	svc := c.serviceByHost(host)
	if svc == nil {
		c.errorf("%s: %s host %q is not a Service in namespace %s", name, v, host, c.want.namespace)
		return
	}
	if !selectorMapMatches(svc.Spec.Selector, target.w.template.Labels) {
		c.errorf("%s: %s: Service %s does not select %s", name, v, svc.Name, target.w)
		return
	}
	for _, sp := range svc.Spec.Ports {
		if int(sp.Port) != port || protocolOf(sp.Protocol) != proto {
			continue
		}
		tp := sp.TargetPort
		if tp.Type == intstr.Int && tp.IntVal == 0 {
			tp = intstr.FromInt32(sp.Port)
		}
		n, ok := resolvePort(target.c.Ports, tp, proto)
		if !ok || n != wantPort {
			c.errorf("%s: %s: Service %s port %d/%s reaches %s port %v, which is not %d", name, v, svc.Name, port, proto, target.w, tp.String(), wantPort)
		}
		return
	}
	c.errorf("%s: %s: Service %s has no port %d/%s", name, v, svc.Name, port, proto)
}

// checkServices checks that every Service selects some workload's pods and
// that every target port exists on them.
func (c *checker) checkServices() {
	for _, name := range sortedKeys(c.m.services) {
		svc := c.m.services[name]
		targets := c.podSelectedBy(svc.Spec.Selector)
		if len(targets) == 0 {
			c.errorf("Service/%s: selector %v matches no workload's pods", name, svc.Spec.Selector)
			continue
		}
		for _, sp := range svc.Spec.Ports {
			tp := sp.TargetPort
			if tp.Type == intstr.Int && tp.IntVal == 0 {
				tp = intstr.FromInt32(sp.Port)
			}
			for _, w := range targets {
				found := false
				for _, ct := range w.template.Spec.Containers {
					if _, ok := resolvePort(ct.Ports, tp, protocolOf(sp.Protocol)); ok {
						found = true
					}
				}
				if !found {
					c.errorf("Service/%s: port %s targets %s/%s, which %s does not declare", name, sp.Name, tp.String(), protocolOf(sp.Protocol), w)
				}
			}
		}
	}
}

func (c *checker) checkPDBs() {
	for _, name := range sortedKeys(c.m.pdbs) {
		pdb := c.m.pdbs[name]
		n := 0
		for _, w := range c.m.workloads() {
			if matches(pdb.Spec.Selector, w.template.Labels) {
				n++
			}
		}
		if n == 0 {
			c.errorf("PodDisruptionBudget/%s: selector matches no workload's pods", name)
		}
		if (pdb.Spec.MinAvailable == nil) == (pdb.Spec.MaxUnavailable == nil) {
			c.errorf("PodDisruptionBudget/%s: set exactly one of minAvailable and maxUnavailable", name)
		}
	}
}

// checkEnvNames returns every variable set in a container that the
// container's binary does not read, given the -h tables of the binaries
// to check (containers running other binaries are not checked).
func checkEnvNames(m *manifests, vars map[string]map[string]usageVar) []string {
	c := &checker{m: m, byBinary: map[string]placed{}}
	var problems []string
	for _, w := range m.workloads() {
		for i := range w.template.Spec.Containers {
			ct := &w.template.Spec.Containers[i]
			if len(ct.Command) == 0 {
				continue
			}
			binary := path.Base(ct.Command[0])
			table, ok := vars[binary]
			if !ok {
				continue // not asked about this binary
			}
			e := c.containerEnv(w, ct)
			for _, v := range e.names() {
				if _, ok := table[v]; !ok {
					src := "env"
					if cm, ok := e.fromCM[v]; ok {
						src = "ConfigMap " + cm
					}
					problems = append(problems, fmt.Sprintf("%s container %s: %s (from %s) is not read by %s (see %s -h)", w, ct.Name, v, src, binary, binary))
				}
			}
		}
	}
	return append(problems, c.problems...)
}

// sccgoLabel is the pod label every sccgo workload carries; the
// NetworkPolicy admits node-to-node traffic by it.
const sccgoLabel = "app.kubernetes.io/name"

// checkNetworkPolicies checks that NetworkPolicies select every sccgo
// pod and admit: anyone to the frontend's client port; only sccgo pods of
// the namespace to the state and broker link ports and to gossip, and all
// the pods that need them; to the admin ports only pods picked by label
// (the monitoring), never everyone.
func (c *checker) checkNetworkPolicies() {
	for _, comp := range components {
		p := c.byBinary[comp.binary]
		e := c.containerEnv(p.w, p.c)
		name := p.w.String()
		var pols []*networkingv1.NetworkPolicy
		for _, pn := range sortedKeys(c.m.netpols) {
			np := c.m.netpols[pn]
			if selects(&np.Spec.PodSelector, p.w.template.Labels) && limitsIngress(np) {
				pols = append(pols, np)
			}
		}
		if len(pols) == 0 {
			c.errorf("%s: no NetworkPolicy selects its pods: every port, metrics included, is open to the whole cluster", name)
			continue
		}
		// admitted returns the peers let in to port/proto, and whether a
		// rule without "from" lets everyone in.
		admitted := func(port int, proto corev1.Protocol) (peers []networkingv1.NetworkPolicyPeer, everyone bool) {
			for _, np := range pols {
				for _, rule := range np.Spec.Ingress {
					if !ruleCovers(rule.Ports, p.c.Ports, port, proto) {
						continue
					}
					if len(rule.From) == 0 {
						everyone = true
					}
					peers = append(peers, rule.From...)
				}
			}
			return peers, everyone
		}
		internal := func(what string, port int, proto corev1.Protocol, sources []string) {
			peers, everyone := admitted(port, proto)
			if everyone {
				c.errorf("%s: NetworkPolicy admits everyone to the %s port %d/%s; only sccgo pods may reach it", name, what, port, proto)
				return
			}
			for _, peer := range peers {
				if !sccgoOnly(peer) {
					c.errorf("%s: NetworkPolicy admits %s to the %s port %d/%s; only sccgo pods of the namespace may reach it", name, peerString(peer), what, port, proto)
				}
			}
			for _, src := range sources {
				sp := c.byBinary[src]
				if !slices.ContainsFunc(peers, func(peer networkingv1.NetworkPolicyPeer) bool { return peerAdmits(peer, sp.w.template.Labels) }) {
					c.errorf("%s: NetworkPolicy does not admit %s to the %s port %d/%s", name, sp.w, what, port, proto)
				}
			}
		}
		mainPort := c.intVar(name, e, comp.portVar, comp.defaultPort)
		switch comp.binary {
		case binFrontend:
			if _, everyone := admitted(mainPort, corev1.ProtocolTCP); !everyone {
				c.errorf("%s: NetworkPolicy keeps clients from the client port %d (admit it from anywhere; the Ingress controller's pods are the clients)", name, mainPort)
			}
		case binState:
			internal("link", mainPort, corev1.ProtocolTCP, []string{binBroker, binFrontend})
		case binBroker:
			internal("link", mainPort, corev1.ProtocolTCP, []string{binFrontend})
		}
		gossip := c.intVar(name, e, "SCC_GOSSIP_PORT", defaultGossipPort)
		all := []string{binState, binBroker, binFrontend}
		for _, proto := range []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP} {
			internal("gossip", gossip, proto, all)
		}
		if admin := c.intVar(name, e, "SCC_ADMIN_PORT", comp.defaultAdminPort); admin != 0 {
			peers, everyone := admitted(admin, corev1.ProtocolTCP)
			switch {
			case everyone:
				c.errorf("%s: NetworkPolicy admits everyone to the admin port %d (metrics); admit the monitoring pods by label", name, admin)
			case len(peers) == 0:
				c.errorf("%s: NetworkPolicy admits nobody to the admin port %d: metrics cannot be scraped", name, admin)
			}
			for _, peer := range peers {
				if peer.IPBlock != nil || peer.PodSelector == nil || (len(peer.PodSelector.MatchLabels) == 0 && len(peer.PodSelector.MatchExpressions) == 0) {
					c.errorf("%s: NetworkPolicy admits %s to the admin port %d; admit the monitoring pods by label", name, peerString(peer), admin)
				}
			}
		}
	}
}

// selects reports whether a pod selector selects labels; an empty
// selector selects every pod. Expressions are not evaluated: a selector
// with them selects nothing here, so a check that needs it fails loudly.
func selects(sel *metav1.LabelSelector, labels map[string]string) bool {
	if sel == nil || len(sel.MatchExpressions) > 0 {
		return false
	}
	for k, v := range sel.MatchLabels {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// limitsIngress reports whether a policy restricts ingress: policyTypes
// lists Ingress, or is empty (then Ingress is implied).
func limitsIngress(np *networkingv1.NetworkPolicy) bool {
	return len(np.Spec.PolicyTypes) == 0 || slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress)
}

// ruleCovers reports whether a rule's ports include port/proto of a
// container (no ports: every port).
func ruleCovers(ports []networkingv1.NetworkPolicyPort, ct []corev1.ContainerPort, port int, proto corev1.Protocol) bool {
	if len(ports) == 0 {
		return true
	}
	for _, np := range ports {
		if protocolOf(deref(np.Protocol)) != proto {
			continue
		}
		if np.Port == nil {
			return true
		}
		if np.EndPort != nil && np.Port.Type == intstr.Int {
			if port >= int(np.Port.IntVal) && port <= int(*np.EndPort) {
				return true
			}
			continue
		}
		if n, ok := resolvePort(ct, *np.Port, proto); ok && n == port {
			return true
		}
	}
	return false
}

// sccgoOnly reports whether a peer is sccgo pods of the policy's own
// namespace and nothing else.
func sccgoOnly(peer networkingv1.NetworkPolicyPeer) bool {
	return peer.IPBlock == nil && peer.NamespaceSelector == nil && peer.PodSelector != nil &&
		len(peer.PodSelector.MatchExpressions) == 0 && peer.PodSelector.MatchLabels[sccgoLabel] == "sccgo"
}

// peerAdmits reports whether a peer admits pods of the policy's own
// namespace with labels.
func peerAdmits(peer networkingv1.NetworkPolicyPeer, labels map[string]string) bool {
	return peer.IPBlock == nil && peer.NamespaceSelector == nil && peer.PodSelector != nil && selects(peer.PodSelector, labels)
}

func peerString(peer networkingv1.NetworkPolicyPeer) string {
	var parts []string
	if peer.NamespaceSelector != nil {
		parts = append(parts, "namespaceSelector "+metav1.FormatLabelSelector(peer.NamespaceSelector))
	}
	if peer.PodSelector != nil {
		parts = append(parts, "podSelector "+metav1.FormatLabelSelector(peer.PodSelector))
	}
	if peer.IPBlock != nil {
		parts = append(parts, "ipBlock "+peer.IPBlock.CIDR)
	}
	return strings.Join(parts, " and ")
}
