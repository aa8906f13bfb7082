package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
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
	assert.False(t, run(strings.NewReader(in), &out))
	assert.Contains(t, out.String(), "ok  \tp\t1.500s\n")
	assert.Contains(t, out.String(), "skipped 2: skipping on backend kvm: no /dev/kvm: TestA/kvm TestB/kvm\n")
	assert.Contains(t, out.String(), "c_test.go:3: boom")
	assert.Contains(t, out.String(), "FAIL\tq\t0.100s\n")
	assert.Contains(t, out.String(), "1 tests failed")

	out.Reset()
	assert.True(t, run(strings.NewReader(`{"Action":"pass","Package":"p"}`), &out))
}
