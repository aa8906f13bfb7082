package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSummary(t *testing.T) {
	in := strings.Join([]string{
		`{"Action":"run","Package":"p","Test":"TestA"}`,
		`{"Action":"output","Package":"p","Test":"TestA/kvm","Output":"=== RUN   TestA/kvm\n"}`,
		`{"Action":"output","Package":"p","Test":"TestA/kvm","Output":"    backendtest.go:85: skipping on backend kvm: no /dev/kvm\n"}`,
		`{"Action":"output","Package":"p","Test":"TestA/kvm","Output":"--- SKIP: TestA/kvm (0.00s)\n"}`,
		`{"Action":"skip","Package":"p","Test":"TestA/kvm"}`,
		`{"Action":"output","Package":"p","Test":"TestB/kvm","Output":"    backendtest.go:85: skipping on backend kvm: no /dev/kvm\n"}`,
		`{"Action":"skip","Package":"p","Test":"TestB/kvm"}`,
		`{"Action":"pass","Package":"p","Test":"TestA"}`,
		`{"Action":"pass","Package":"p","Elapsed":1.5}`,
		`{"Action":"output","Package":"q","Test":"TestC","Output":"    c_test.go:3: boom\n"}`,
		`{"Action":"fail","Package":"q","Test":"TestC"}`,
		`{"Action":"fail","Package":"q","Elapsed":0.1}`,
	}, "\n")
	var out bytes.Buffer
	assert.False(t, run(strings.NewReader(in), &out, false))
	assert.Contains(t, out.String(), "ok  \tp\t1.500s\n")
	assert.Contains(t, out.String(), "skipped 2: skipping on backend kvm: no /dev/kvm: TestA/kvm TestB/kvm\n")
	assert.Contains(t, out.String(), "c_test.go:3: boom")
	assert.Contains(t, out.String(), "FAIL\tq\t0.100s\n")
	assert.Contains(t, out.String(), "1 tests failed")

	out.Reset()
	assert.True(t, run(strings.NewReader(`{"Action":"pass","Package":"p"}`), &out, false))
}

func TestBackends(t *testing.T) {
	host := strings.Join([]string{
		`{"Action":"pass","Package":"p","Test":"TestA/ptrace/1-vcpus"}`,
		`{"Action":"pass","Package":"p","Test":"TestA/ptrace"}`,
		`{"Action":"output","Package":"p","Test":"TestKill/kvm","Output":"    vm_test.go:5: only the ptrace backend has stub processes\n"}`,
		`{"Action":"skip","Package":"p","Test":"TestKill/kvm"}`,
		`{"Action":"pass","Package":"p","Test":"TestKill/ptrace"}`,
		`{"Action":"pass","Package":"p","Test":"TestCLI"}`,
	}, "\n")
	runner := strings.Join([]string{
		`{"Action":"pass","Package":"p","Test":"TestA/kvm/1-vcpus"}`,
		`{"Action":"fail","Package":"p","Test":"TestA/kvm"}`,
		"lhpvm-runner: not an event",
	}, "\n")
	b := newBackendRuns([]string{"ptrace", "kvm"})
	require.NoError(t, b.read(strings.NewReader(host)))
	require.NoError(t, b.read(strings.NewReader(runner)))
	var out bytes.Buffer
	assert.True(t, b.report(&out, map[string]string{"ptrace": "natively", "kvm": "in the emulated runner"}))
	assert.Contains(t, out.String(), "ptrace: ran natively: 3 subtests, 3 passed\n")
	assert.Contains(t, out.String(), "kvm: ran in the emulated runner: 2 subtests, 1 passed\n")
	assert.Contains(t, out.String(), "not on kvm, by its nature: TestKill/kvm: only the ptrace backend has stub processes\n")

	// A subtest that ran on one backend and vanished on the other fails.
	b = newBackendRuns([]string{"ptrace", "kvm"})
	require.NoError(t, b.read(strings.NewReader(`{"Action":"pass","Package":"p","Test":"TestA/ptrace/x"}`+"\n"+
		`{"Action":"pass","Package":"p","Test":"TestB/kvm"}`)))
	out.Reset()
	assert.False(t, b.report(&out, nil))
	assert.Contains(t, out.String(), "ran on ptrace but not on kvm, with no reason given (1): TestA/*/x")
}
