// Package kubernetes checks the shipped Kubernetes manifests: each decodes
// strictly (an unknown field is an error) into the Kubernetes API types,
// holds what a GPU node's host needs, and the config it carries is one the
// host reads. A module of its own, so that the host does not pull in the
// Kubernetes API.
package kubernetes

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/vramward/vramward/host/config"
)

const dir = "../../kubernetes"

func decode(t *testing.T, name string, into any) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(data, into); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

func TestDaemonSet(t *testing.T) {
	var ds appsv1.DaemonSet
	decode(t, "daemonset.yaml", &ds)
	if ds.Kind != "DaemonSet" || ds.APIVersion != "apps/v1" {
		t.Fatalf("%s %s", ds.APIVersion, ds.Kind)
	}
	pod := ds.Spec.Template.Spec
	if pod.NodeSelector["nvidia.com/gpu.present"] != "true" || pod.RuntimeClassName == nil {
		t.Error("not placed on GPU nodes with the NVIDIA runtime")
	}
	if sc := pod.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		t.Error("may run as root")
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers", len(pod.Containers))
	}
	c := pod.Containers[0]
	if sc := c.SecurityContext; sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || sc.Capabilities == nil || len(sc.Capabilities.Drop) == 0 {
		t.Error("the container's root file system is writable, or it may escalate, or keeps capabilities")
	}
	if _, ok := c.Resources.Limits["nvidia.com/gpu"]; !ok {
		t.Error("no GPU requested")
	}
	for _, e := range c.Env {
		if strings.Contains(strings.ToLower(e.Name), "token") {
			t.Errorf("the token reaches the host through the environment (%s): mount it as a file", e.Name)
		}
	}
	if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" || c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Error("probes: liveness must be /healthz, readiness /readyz")
	}
	mounts := map[string]corev1.VolumeMount{}
	for _, m := range c.VolumeMounts {
		mounts[m.Name] = m
	}
	vols := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		vols[v.Name] = v
	}
	if v := vols["token"]; v.Secret == nil || v.Secret.DefaultMode == nil || *v.Secret.DefaultMode != 0o400 || !mounts["token"].ReadOnly {
		t.Error("the token is not a read-only Secret file of mode 0400")
	}
	if v := vols["state"]; v.HostPath == nil {
		t.Error("the state dir is not on the node: a restart would start a new log")
	}
	if !mounts["models"].ReadOnly {
		t.Error("the models are writable")
	}
	if ds.Spec.Template.Annotations["prometheus.io/port"] != "9464" || c.Ports[0].ContainerPort != 9464 {
		t.Error("metrics port")
	}
	if g := pod.TerminationGracePeriodSeconds; g == nil || *g <= 10 {
		t.Error("the grace period does not leave the host its shutdown_timeout")
	}
}

// The ConfigMap's config is one the host reads, and its paths are where the
// DaemonSet mounts things.
func TestConfigMap(t *testing.T) {
	var cm corev1.ConfigMap
	decode(t, "configmap.yaml", &cm)
	text := cm.Data["vramward.hcl"]
	path := filepath.Join(t.TempDir(), "vramward.hcl")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("NODE_NAME", "gpu-node-7")
	cfg, _, diags := config.Load(path)
	if diags.HasErrors() {
		t.Fatalf("the host does not read the ConfigMap's config:\n%s", config.Format(diags))
	}
	if cfg.Worker.ID != "gpu-node-7" || cfg.Worker.TokenFile != "/run/secrets/vramward/token" || cfg.Worker.StateDir != "/var/lib/vramward" {
		t.Errorf("worker %+v", cfg.Worker)
	}
	if cfg.Metrics.Listen != "0.0.0.0:9464" {
		t.Errorf("metrics listen %s", cfg.Metrics.Listen)
	}
}

func TestService(t *testing.T) {
	var s corev1.Service
	decode(t, "service.yaml", &s)
	if s.Spec.ClusterIP != "None" || s.Spec.Selector["app.kubernetes.io/name"] != "vramward" || s.Spec.Ports[0].Port != 9464 {
		t.Errorf("%+v", s.Spec)
	}
}

// The PrometheusRule holds exactly the shipped alert rules (which promtool
// checks in the main module).
func TestPrometheusRule(t *testing.T) {
	var pr struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name      string            `json:"name"`
			Namespace string            `json:"namespace"`
			Labels    map[string]string `json:"labels"`
		} `json:"metadata"`
		Spec struct {
			Groups []any `json:"groups"`
		} `json:"spec"`
	}
	decode(t, "prometheusrule.yaml", &pr)
	var shipped struct {
		Groups []any `json:"groups"`
	}
	data, err := os.ReadFile("../../prometheus-rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(data, &shipped); err != nil {
		t.Fatal(err)
	}
	if pr.Kind != "PrometheusRule" || pr.APIVersion != "monitoring.coreos.com/v1" || len(pr.Spec.Groups) == 0 || !reflect.DeepEqual(pr.Spec.Groups, shipped.Groups) {
		t.Fatal("the PrometheusRule's groups are not the shipped rules")
	}
}
