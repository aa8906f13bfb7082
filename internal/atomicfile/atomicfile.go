// Package atomicfile writes a file so that a reader, a crash or a full disk
// never leaves a half-written one in its place: the content goes to a
// temporary file beside it, which is synced and then renamed over the
// path. On any error the old file (if any) is left as it was and the
// temporary file is removed.
package atomicfile

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
)

// Write writes path with what write produces.
func Write(path string, write func(io.Writer) error) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err = write(f); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	// CreateTemp makes it 0600: a result file is as readable as any other.
	if err = os.Chmod(f.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// WriteBytes writes path with b.
func WriteBytes(path string, b []byte) error {
	return Write(path, func(w io.Writer) error {
		_, err := io.Copy(w, bytes.NewReader(b))
		return err
	})
}

// CheckReplaceable reports, before the work whose result will replace
// path, whether Write will be able to: path is writable, and its directory
// takes a new file of size bytes (a read-only mount or a full disk is
// found now, not after the work).
func CheckReplaceable(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	f.Close()
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".lhpvm-probe-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(make([]byte, size))
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	return err
}
