package tests

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// tmpfs mounts a tmpfs of size (mount(8)'s -o size=) on a new directory,
// unmounted when the test ends. It needs root; without it the test is
// skipped (these tests are about files, not about a backend).
func tmpfs(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	dir := t.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "lhpvm-test", dir).CombinedOutput()
	require.NoError(t, err, "mount: %s", out)
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	return dir
}

// readOnly remounts the tmpfs at dir read-only.
func readOnly(t *testing.T, dir string) {
	t.Helper()
	out, err := exec.Command("mount", "-o", "remount,ro", dir).CombinedOutput()
	require.NoError(t, err, "remount: %s", out)
}

// fill writes a file into dir until the file system is full.
func fill(t *testing.T, dir string) {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, "filler"))
	require.NoError(t, err)
	defer f.Close()
	chunk := make([]byte, 64<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			break
		}
	}
	_ = f.Sync()
}

// wholeFiles checks what an experiment left in dir: no temporary file, and
// every results.json whole.
func wholeFiles(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range entries {
		assert.False(t, strings.HasPrefix(e.Name(), "."), "a temporary file left behind: %s", e.Name())
		if e.Name() == "results.json" {
			var v map[string]any
			assert.NoError(t, json.Unmarshal(readFile(t, filepath.Join(dir, e.Name())), &v), "results.json is whole")
		}
	}
}

// TestFullAndReadOnlyDisks: a disk that fills up during an experiment, or
// a read-only one, never leaves a half-written file; the table of what
// finished still goes to stdout, and the command exits non-zero with one
// line naming the path. A read-only --out or --doc is found before the
// first run, and --doc is left as it was.
func TestFullAndReadOnlyDisks(t *testing.T) {
	exp := []string{"experiment", "--sizes", "4", "--locks", "tas", "--policies", "rr", "--duration", "50ms", "--repeat", "1", "--quiet"}

	t.Run("full --out", func(t *testing.T) {
		// 1 MiB takes the journal, results.json and the CSVs, and not
		// every plot (about 0.5 MB each, fonts embedded).
		out := filepath.Join(tmpfs(t, "1m"), "out")
		stdout, stderr, code := lhpvm(t, append(exp, "--out", out)...)
		assert.Equal(t, 1, code, stderr)
		assert.Contains(t, stdout, "| 4 | tas | rr | 1 |", "the table of what finished")
		assert.Equal(t, 1, strings.Count(stderr, "\n"), "one line: %q", stderr)
		assert.Contains(t, stderr, out)
		assert.Contains(t, stderr, "no space left on device")
		wholeFiles(t, out)
	})

	t.Run("read-only --out", func(t *testing.T) {
		dir := tmpfs(t, "1m")
		out := filepath.Join(dir, "out")
		require.NoError(t, os.Mkdir(out, 0o755))
		readOnly(t, dir)
		stdout, stderr, code := lhpvm(t, append(exp, "--out", out)...)
		assert.Equal(t, 1, code, stderr)
		assert.Empty(t, stdout, "nothing ran")
		assert.Equal(t, 1, strings.Count(stderr, "\n"), "one line: %q", stderr)
		assert.Contains(t, stderr, out)
		assert.Contains(t, stderr, "read-only file system")
	})

	const old = "# Literature\n\n<!-- preset kvm-boost -->\nthe published numbers\n<!-- end preset kvm-boost -->\n"
	for name, spoil := range map[string]func(t *testing.T, dir string){
		"read-only --doc": readOnly,
		"full --doc":      fill,
	} {
		t.Run(name, func(t *testing.T) {
			dir := tmpfs(t, "1m")
			doc := filepath.Join(dir, "literature.md")
			require.NoError(t, os.WriteFile(doc, []byte(old), 0o644))
			spoil(t, dir)
			stdout, stderr, code := lhpvm(t, "experiment", "--preset", "kvm-boost", "--duration", "5ms", "--repeat", "1", "--quiet", "--doc", doc)
			assert.Equal(t, 1, code, stderr)
			assert.Empty(t, stdout, "found before the first run")
			assert.Equal(t, 1, strings.Count(stderr, "\n"), "one line: %q", stderr)
			assert.Contains(t, stderr, doc)
			assert.Equal(t, old, string(readFile(t, doc)), "the document is left as it was")
		})
	}
}
