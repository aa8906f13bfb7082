package tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

// TestShardAuto: --shard auto takes its shard from the job that runs it
// (here a Kubernetes Indexed Job's pod 1 of 2), and refuses to guess.
func TestShardAuto(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	cmd := exec.Command(lhpvmBin(t), "experiment", "--shard", "auto", "--out", dir, "--sizes", "2,4", "--locks", "tas",
		"--policies", "rr", "--duration", "20ms", "--repeat", "1", "--quiet")
	cmd.Env = append(os.Environ(), "JOB_COMPLETION_INDEX=1", "JOB_COMPLETIONS=2")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	r := readExp(t, dir)
	require.Len(t, r.Cells, 1, "shard 2 of 2 of two cells")
	assert.Equal(t, 4, r.Cells[0].VCPUs)

	usage(t, "--shard auto: neither a Slurm job array", "experiment", "--shard", "auto", "--out", t.TempDir())
}

// The Kubernetes manifests agree with lhpvm and with each other: an
// Indexed Job whose pods run --shard auto, told their count in
// JOB_COMPLETIONS, and a merge of exactly its shards.
func TestK8sManifests(t *testing.T) {
	var shards struct {
		Spec struct {
			CompletionMode string `yaml:"completionMode"`
			Completions    int    `yaml:"completions"`
			Template       struct {
				Spec struct {
					Containers []struct {
						Args []string `yaml:"args"`
						Env  []struct{ Name, Value string }
					} `yaml:"containers"`
				} `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	require.NoError(t, yaml.Unmarshal(readFile(t, "../deploy/k8s/lhpvm-shards.yaml"), &shards))
	s := shards.Spec
	assert.Equal(t, "Indexed", s.CompletionMode)
	require.Len(t, s.Template.Spec.Containers, 1)
	c := s.Template.Spec.Containers[0]
	assert.Contains(t, strings.Join(c.Args, " "), "--shard auto --out /results/shard-$JOB_COMPLETION_INDEX")
	require.Len(t, c.Env, 1)
	assert.Equal(t, "JOB_COMPLETIONS", c.Env[0].Name)
	assert.Equal(t, fmt.Sprint(s.Completions), c.Env[0].Value, "JOB_COMPLETIONS is spec.completions")

	var merge struct {
		Spec struct {
			Template struct {
				Spec struct {
					Containers []struct {
						Command []string `yaml:"command"`
					} `yaml:"containers"`
				} `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	require.NoError(t, yaml.Unmarshal(readFile(t, "../deploy/k8s/lhpvm-merge.yaml"), &merge))
	require.Len(t, merge.Spec.Template.Spec.Containers, 1)
	want := []string{"lhpvm", "merge", "--out", "/results/merged"}
	for i := range s.Completions {
		want = append(want, fmt.Sprintf("/results/shard-%d", i))
	}
	assert.Equal(t, want, merge.Spec.Template.Spec.Containers[0].Command)
}
