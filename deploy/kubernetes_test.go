package deploy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/pgswitch/pgswitch/config"
)

// kubeDir holds the Kubernetes manifests. No test here runs a cluster (no
// image can be pulled on our machines): the manifests are decoded field by
// field against the part of Kubernetes' schema they use, an unknown field
// being an error (a misspelt readinessProbe would otherwise be silently
// ignored by this test and by nothing else), and checked against each
// other and against the pgswitch configuration they carry.
const kubeDir = "kubernetes"

// The part of Kubernetes' API the manifests use. A field added to a
// manifest must be added here, with its Kubernetes name and type.
type (
	kubeObject struct {
		APIVersion string            `yaml:"apiVersion"`
		Kind       string            `yaml:"kind"`
		Metadata   kubeMeta          `yaml:"metadata"`
		Data       map[string]string `yaml:"data"` // ConfigMap
		Spec       yaml.Node         `yaml:"spec"` // decoded by kind: specOf
		file       string
		doc        string // the object's YAML document
		line       int    // where the document starts in file
	}
	kubeMeta struct {
		Name        string            `yaml:"name"`
		Namespace   string            `yaml:"namespace"`
		Labels      map[string]string `yaml:"labels"`
		Annotations map[string]string `yaml:"annotations"`
	}
	labelSelector struct {
		MatchLabels map[string]string `yaml:"matchLabels"`
	}
	statefulSetSpec struct {
		Replicas            int                   `yaml:"replicas"`
		Ordinals            struct{ Start int }   `yaml:"ordinals"`
		ServiceName         string                `yaml:"serviceName"`
		PodManagementPolicy string                `yaml:"podManagementPolicy"`
		UpdateStrategy      struct{ Type string } `yaml:"updateStrategy"`
		Selector            labelSelector         `yaml:"selector"`
		Template            struct {
			Metadata kubeMeta `yaml:"metadata"`
			Spec     podSpec  `yaml:"spec"`
		} `yaml:"template"`
	}
	podSpec struct {
		TerminationGracePeriodSeconds int `yaml:"terminationGracePeriodSeconds"`
		SecurityContext               struct {
			RunAsNonRoot bool `yaml:"runAsNonRoot"`
			RunAsUser    int  `yaml:"runAsUser"`
		} `yaml:"securityContext"`
		Containers []container `yaml:"containers"`
		Volumes    []struct {
			Name      string `yaml:"name"`
			ConfigMap *struct {
				Name string `yaml:"name"`
			} `yaml:"configMap"`
		} `yaml:"volumes"`
	}
	container struct {
		Name  string   `yaml:"name"`
		Image string   `yaml:"image"`
		Args  []string `yaml:"args"`
		Env   []struct {
			Name      string `yaml:"name"`
			Value     string `yaml:"value"`
			ValueFrom *struct {
				FieldRef *struct {
					FieldPath string `yaml:"fieldPath"`
				} `yaml:"fieldRef"`
				SecretKeyRef *struct {
					Name string `yaml:"name"`
					Key  string `yaml:"key"`
				} `yaml:"secretKeyRef"`
			} `yaml:"valueFrom"`
		} `yaml:"env"`
		Ports []struct {
			Name          string `yaml:"name"`
			ContainerPort int    `yaml:"containerPort"`
		} `yaml:"ports"`
		LivenessProbe  *probe `yaml:"livenessProbe"`
		ReadinessProbe *probe `yaml:"readinessProbe"`
		VolumeMounts   []struct {
			Name      string `yaml:"name"`
			MountPath string `yaml:"mountPath"`
			ReadOnly  bool   `yaml:"readOnly"`
			SubPath   string `yaml:"subPath"`
		} `yaml:"volumeMounts"`
		SecurityContext struct {
			AllowPrivilegeEscalation bool `yaml:"allowPrivilegeEscalation"`
			ReadOnlyRootFilesystem   bool `yaml:"readOnlyRootFilesystem"`
		} `yaml:"securityContext"`
	}
	probe struct {
		HTTPGet *struct {
			Path string `yaml:"path"`
			Port string `yaml:"port"` // a number or a port's name
		} `yaml:"httpGet"`
		InitialDelaySeconds int `yaml:"initialDelaySeconds"`
		PeriodSeconds       int `yaml:"periodSeconds"`
		TimeoutSeconds      int `yaml:"timeoutSeconds"`
		FailureThreshold    int `yaml:"failureThreshold"`
	}
	serviceSpec struct {
		Type                     string            `yaml:"type"`
		ClusterIP                string            `yaml:"clusterIP"`
		PublishNotReadyAddresses bool              `yaml:"publishNotReadyAddresses"`
		Selector                 map[string]string `yaml:"selector"`
		Ports                    []struct {
			Name       string `yaml:"name"`
			Port       int    `yaml:"port"`
			TargetPort string `yaml:"targetPort"`
		} `yaml:"ports"`
	}
	pdbSpec struct {
		MaxUnavailable string        `yaml:"maxUnavailable"`
		MinAvailable   string        `yaml:"minAvailable"`
		Selector       labelSelector `yaml:"selector"`
	}
	kustomization struct {
		APIVersion string   `yaml:"apiVersion"`
		Kind       string   `yaml:"kind"`
		Resources  []string `yaml:"resources"`
		Images     []struct {
			Name    string `yaml:"name"`
			NewName string `yaml:"newName"`
			NewTag  string `yaml:"newTag"`
		} `yaml:"images"`
	}
)

// strict decodes data into v; a field v does not have is an error.
func strict(data []byte, v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	return dec.Decode(v)
}

// specOf decodes o's spec, strictly, as a T.
func specOf[T any](t *testing.T, o *kubeObject) T {
	t.Helper()
	var v struct {
		APIVersion string            `yaml:"apiVersion"`
		Kind       string            `yaml:"kind"`
		Metadata   kubeMeta          `yaml:"metadata"`
		Data       map[string]string `yaml:"data"`
		Spec       T                 `yaml:"spec"`
	}
	if err := strict([]byte(o.doc), &v); err != nil {
		t.Fatalf("%s: %s %s (lines counted from the document's start, line %d): %v", o.file, o.Kind, o.Metadata.Name, o.line, err)
	}
	return v.Spec
}

// docSep separates the documents of a YAML file.
var docSep = regexp.MustCompile(`(?m)^---[ \t]*$`)

var apiVersions = map[string]string{
	"ConfigMap": "v1", "Service": "v1", "StatefulSet": "apps/v1", "PodDisruptionBudget": "policy/v1",
}

// loadManifests decodes every object of the files kustomization.yaml
// lists, and checks that it lists every manifest there is.
func loadManifests(t *testing.T) []*kubeObject {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(kubeDir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k kustomization
	if err := strict(data, &k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		t.Errorf("kustomization.yaml: got %s %s, want kustomize.config.k8s.io/v1beta1 Kustomization", k.APIVersion, k.Kind)
	}
	files, _ := filepath.Glob(filepath.Join(kubeDir, "*.yaml"))
	var want []string
	for _, f := range files {
		if b := filepath.Base(f); b != "kustomization.yaml" {
			want = append(want, b)
		}
	}
	if got := slices.Sorted(slices.Values(k.Resources)); !slices.Equal(got, want) {
		t.Errorf("kustomization.yaml resources: got %v, want every manifest: %v", got, want)
	}
	var objs []*kubeObject
	for _, f := range k.Resources {
		data, err := os.ReadFile(filepath.Join(kubeDir, f))
		if err != nil {
			t.Fatal(err)
		}
		line := 1
		for _, doc := range docSep.Split(string(data), -1) {
			o := &kubeObject{file: f, doc: doc, line: line}
			line += strings.Count(doc, "\n")
			if err := strict([]byte(doc), o); errors.Is(err, io.EOF) {
				continue // comments only
			} else if err != nil {
				t.Fatalf("%s (lines counted from line %d): %v", f, o.line, err)
			}
			if want, ok := apiVersions[o.Kind]; !ok || o.APIVersion != want || o.Metadata.Name == "" {
				t.Errorf("%s: got kind %q apiVersion %q name %q, want one of %v with its apiVersion, and a name",
					f, o.Kind, o.APIVersion, o.Metadata.Name, slices.Sorted(maps.Keys(apiVersions)))
			}
			objs = append(objs, o)
		}
	}
	return objs
}

func find(t *testing.T, objs []*kubeObject, kind, name string) *kubeObject {
	t.Helper()
	for _, o := range objs {
		if o.Kind == kind && (name == "" || o.Metadata.Name == name) {
			return o
		}
	}
	t.Fatalf("no %s %q in %s", kind, name, kubeDir)
	return nil
}

// subset reports whether every label of sel is in labels.
func subset(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false // selects everything: never meant
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// TestKubernetesManifests checks what makes the manifests work together:
// the probes reach /healthz and /readyz on the configuration's
// metrics_listen; the file pgswitch is told to read is the ConfigMap's, as
// a directory mount that Kubernetes updates and pgswitch watches; every
// pod has a peer_id and every peer's address names a pod; the Services
// and the PodDisruptionBudget select the pods.
func TestKubernetesManifests(t *testing.T) {
	objs := loadManifests(t)
	stsObj := find(t, objs, "StatefulSet", "")
	sts := specOf[statefulSetSpec](t, stsObj)
	pod := sts.Template.Spec
	podLabels := sts.Template.Metadata.Labels
	if !subset(sts.Selector.MatchLabels, podLabels) {
		t.Errorf("StatefulSet selector %v does not select its pods' labels %v", sts.Selector.MatchLabels, podLabels)
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("StatefulSet: got %d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	ports := map[string]int{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	portOf := func(what, p string) int {
		if n, err := strconv.Atoi(p); err == nil {
			return n
		}
		n, ok := ports[p]
		if !ok {
			t.Errorf("%s: no container port named %q", what, p)
		}
		return n
	}

	// The configuration file: --config PATH, in a ConfigMap mounted whole.
	i := slices.Index(c.Args, "--config")
	if len(c.Args) < 1 || c.Args[0] != "serve" || i < 0 || i+1 >= len(c.Args) {
		t.Fatalf("container args %v: want serve --config FILE", c.Args)
	}
	path := c.Args[i+1]
	var cm *kubeObject
	for _, m := range c.VolumeMounts {
		if m.MountPath != filepath.Dir(path) {
			continue
		}
		if m.SubPath != "" {
			t.Errorf("volume mount %s uses subPath: Kubernetes never updates such a mount, so no reload would come", m.Name)
		}
		for _, v := range pod.Volumes {
			if v.Name == m.Name && v.ConfigMap != nil {
				cm = find(t, objs, "ConfigMap", v.ConfigMap.Name)
			}
		}
	}
	if cm == nil {
		t.Fatalf("--config %s: no ConfigMap volume is mounted at %s", path, filepath.Dir(path))
	}
	text, ok := cm.Data[filepath.Base(path)]
	if !ok {
		t.Fatalf("--config %s: ConfigMap %s has no key %s", path, cm.Metadata.Name, filepath.Base(path))
	}
	w := slices.Index(c.Args, "--watch-config")
	if w < 0 || w+1 >= len(c.Args) {
		t.Errorf("container args %v: want --watch-config, so that a changed ConfigMap is reloaded", c.Args)
	} else if d, err := time.ParseDuration(c.Args[w+1]); err != nil || d <= 0 {
		t.Errorf("--watch-config %q: want a positive duration", c.Args[w+1])
	}

	// Every ${NAME} in the file comes from the container's environment.
	env := map[string]bool{}
	var peerIDFrom string
	for _, e := range c.Env {
		env[e.Name] = true
		if e.Name == "PGSWITCH_PEER_ID" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			peerIDFrom = e.ValueFrom.FieldRef.FieldPath
		}
	}
	for _, m := range envRef.FindAllStringSubmatch(text, -1) {
		if !env[m[1]] {
			t.Errorf("the configuration uses ${%s}, which the container's env does not set", m[1])
		}
		t.Setenv(m[1], "secret")
	}
	if peerIDFrom != "metadata.labels['apps.kubernetes.io/pod-index']" || sts.Ordinals.Start != 1 {
		t.Errorf("PGSWITCH_PEER_ID from %q with ordinals starting at %d: want the pod-index label, ordinals from 1 (peer_id 0 is no peering)",
			peerIDFrom, sts.Ordinals.Start)
	}

	// The configuration as each pod loads it.
	var cfg *config.Config
	for ordinal := sts.Ordinals.Start; ordinal < sts.Ordinals.Start+sts.Replicas; ordinal++ {
		t.Setenv("PGSWITCH_PEER_ID", strconv.Itoa(ordinal))
		var err error
		if cfg, err = config.Parse([]byte(text)); err != nil {
			t.Fatalf("the ConfigMap's %s for pod %d: %v", filepath.Base(path), ordinal, err)
		}
		if cfg.PeerID != ordinal {
			t.Errorf("pod %d: peer_id %d, want its ordinal", ordinal, cfg.PeerID)
		}
	}
	_, listenPort, _ := net.SplitHostPort(cfg.Listen)
	metricsHost, metricsPort, _ := net.SplitHostPort(cfg.MetricsListen)
	if host, _, _ := net.SplitHostPort(cfg.Listen); host != "0.0.0.0" && host != "" && host != "::" {
		t.Errorf("listen %s: want every address, where the Services can reach it", cfg.Listen)
	}
	if cfg.MetricsListen == "" || (metricsHost != "0.0.0.0" && metricsHost != "" && metricsHost != "::") {
		t.Errorf("metrics_listen %q: want it on every address, where the kubelet's probes reach it", cfg.MetricsListen)
	}
	if strconv.Itoa(ports["postgres"]) != listenPort {
		t.Errorf("container port postgres %d, listen %s: want the same port", ports["postgres"], cfg.Listen)
	}

	// Probes on metrics_listen.
	for _, p := range []struct {
		name, path string
		probe      *probe
	}{{"livenessProbe", "/healthz", c.LivenessProbe}, {"readinessProbe", "/readyz", c.ReadinessProbe}} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("%s: want an httpGet of %s", p.name, p.path)
			continue
		}
		if p.probe.HTTPGet.Path != p.path || strconv.Itoa(portOf(p.name, p.probe.HTTPGet.Port)) != metricsPort {
			t.Errorf("%s: GET %s on port %s, want %s on metrics_listen's port %s", p.name, p.probe.HTTPGet.Path, p.probe.HTTPGet.Port, p.path, metricsPort)
		}
	}

	// Peers: one per pod, by its stable DNS name in the headless Service.
	want := map[int]string{}
	for ordinal := sts.Ordinals.Start; ordinal < sts.Ordinals.Start+sts.Replicas; ordinal++ {
		want[ordinal] = fmt.Sprintf("%s-%d.%s:%s", stsObj.Metadata.Name, ordinal, sts.ServiceName, listenPort)
	}
	if !maps.Equal(cfg.Peers, want) {
		t.Errorf("peers %v, want every pod of the StatefulSet by its DNS name: %v", cfg.Peers, want)
	}

	// Shutdown: transactions get timeouts.shutdown, clients that do not
	// read one second more, before the kubelet's SIGKILL.
	if grace := time.Duration(pod.TerminationGracePeriodSeconds) * time.Second; grace <= cfg.Timeouts.Shutdown+time.Second {
		t.Errorf("terminationGracePeriodSeconds %s: want more than timeouts.shutdown (%s) and a second", grace, cfg.Timeouts.Shutdown)
	}

	// Services select the pods and reach their ports; the StatefulSet's
	// serviceName is headless and lists pods that are not ready.
	headless := false
	for _, o := range objs {
		if o.Kind != "Service" {
			continue
		}
		svc := specOf[serviceSpec](t, o)
		if !subset(svc.Selector, podLabels) {
			t.Errorf("Service %s selects %v, not the pods' labels %v", o.Metadata.Name, svc.Selector, podLabels)
		}
		for _, p := range svc.Ports {
			portOf("Service "+o.Metadata.Name+" targetPort", p.TargetPort)
		}
		if o.Metadata.Name == sts.ServiceName {
			headless = svc.ClusterIP == "None" && svc.PublishNotReadyAddresses
		}
	}
	if !headless {
		t.Errorf("Service %s (the StatefulSet's serviceName): want clusterIP None and publishNotReadyAddresses, so that every pod has a DNS name for its peers", sts.ServiceName)
	}

	pdbObj := find(t, objs, "PodDisruptionBudget", "")
	pdb := specOf[pdbSpec](t, pdbObj)
	if !subset(pdb.Selector.MatchLabels, podLabels) {
		t.Errorf("PodDisruptionBudget selects %v, not the pods' labels %v", pdb.Selector.MatchLabels, podLabels)
	}
	if (pdb.MaxUnavailable == "") == (pdb.MinAvailable == "") {
		t.Errorf("PodDisruptionBudget: want exactly one of maxUnavailable and minAvailable")
	}
}

// TestKubernetesKustomize builds the manifests with kubectl's kustomize,
// when kubectl is installed; it needs no cluster. (No Helm chart: plain
// manifests are what TestKubernetesManifests can check without helm.)
func TestKubernetesKustomize(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl is not installed; TestKubernetesManifests checks the manifests without it")
	}
	out, err := exec.Command(kubectl, "kustomize", kubeDir).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl kustomize %s: %v\n%s", kubeDir, err, out)
	}
	for _, kind := range slices.Sorted(maps.Keys(apiVersions)) {
		if !strings.Contains(string(out), "kind: "+kind+"\n") {
			t.Errorf("kubectl kustomize %s: no %s in its output", kubeDir, kind)
		}
	}
}
