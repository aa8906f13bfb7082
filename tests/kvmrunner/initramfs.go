package main

import (
	"bufio"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"regexp"
	"sort"
	"strings"
)

// An initramfs is the runner's whole root file system: busybox, the KVM
// modules, and what the job needs, packed as a newc cpio archive (the format
// the kernel unpacks into its rootfs; uncompressed, so that the emulated CPU
// spends no time inflating it).
type initramfs struct {
	files map[string]entry // path in the runner, without leading slash
}

type entry struct {
	mode    uint32 // permission bits; the type comes from the fields below
	host    string // a host file to copy, or
	data    []byte // its content, or
	symlink string // a symlink's target; dir: a directory
	dir     bool
}

func newInitramfs() *initramfs { return &initramfs{files: map[string]entry{}} }

func clean(p string) string { return strings.TrimPrefix(path.Clean("/"+p), "/") }

// addDirs adds p's parent directories.
func (fs *initramfs) addDirs(p string) {
	for d := path.Dir(p); d != "." && d != "/"; d = path.Dir(d) {
		if _, ok := fs.files[d]; !ok {
			fs.files[d] = entry{mode: 0o755, dir: true}
		}
	}
}

// Dir adds an empty directory.
func (fs *initramfs) Dir(p string) {
	p = clean(p)
	fs.addDirs(p)
	fs.files[p] = entry{mode: 0o755, dir: true}
}

// File adds host file src at p, keeping its permission bits.
func (fs *initramfs) File(p, src string) error {
	st, err := os.Stat(src)
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", src)
	}
	p = clean(p)
	fs.addDirs(p)
	fs.files[p] = entry{mode: uint32(st.Mode().Perm()), host: src}
	return nil
}

// Tree adds every regular file under host directory src at p.
func (fs *initramfs) Tree(p, src string) error {
	ents, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	fs.Dir(p)
	for _, e := range ents {
		s, d := path.Join(src, e.Name()), path.Join(p, e.Name())
		switch {
		case e.IsDir():
			err = fs.Tree(d, s)
		case e.Type().IsRegular():
			err = fs.File(d, s)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Data adds a file with the given content.
func (fs *initramfs) Data(p string, mode uint32, data []byte) {
	p = clean(p)
	fs.addDirs(p)
	fs.files[p] = entry{mode: mode, data: data}
}

// Symlink adds a symbolic link.
func (fs *initramfs) Symlink(p, target string) {
	p = clean(p)
	fs.addDirs(p)
	fs.files[p] = entry{mode: 0o777, symlink: target}
}

// Executable adds host program src at p together with the shared libraries
// and the dynamic loader it needs (as ldd lists them), at their host paths:
// a race-enabled test binary links libc.
func (fs *initramfs) Executable(p, src string) error {
	if err := fs.File(p, src); err != nil {
		return err
	}
	libs, err := sharedLibs(src)
	if err != nil {
		return err
	}
	for _, l := range libs {
		if err := fs.File(l, l); err != nil {
			return fmt.Errorf("%s needs %s: %w", src, l, err)
		}
	}
	return nil
}

var lddLine = regexp.MustCompile(`(?:=>\s*)?(/\S+)\s+\(0x[0-9a-f]+\)`)

// sharedLibs lists the files a dynamically linked program loads; none for a
// static one.
func sharedLibs(prog string) ([]string, error) {
	f, err := elf.Open(prog)
	if err != nil {
		return nil, nil // not an ELF program (a guest image is ELF, a script is not): nothing to load
	}
	dynamic := false
	for _, p := range f.Progs {
		dynamic = dynamic || p.Type == elf.PT_INTERP
	}
	f.Close()
	if !dynamic {
		return nil, nil
	}
	out, err := exec.Command("ldd", prog).Output()
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %w", prog, err)
	}
	var libs []string
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		if strings.Contains(sc.Text(), "not found") {
			return nil, fmt.Errorf("ldd %s: %s", prog, strings.TrimSpace(sc.Text()))
		}
		if m := lddLine.FindStringSubmatch(sc.Text()); m != nil {
			libs = append(libs, m[1])
		}
	}
	return libs, nil
}

// WriteTo writes the archive in the kernel's newc format (Documentation/
// driver-api/early-userspace/buffer-format.rst), parents before children.
func (fs *initramfs) WriteTo(w io.Writer) (int64, error) {
	names := make([]string, 0, len(fs.files))
	for n := range fs.files {
		names = append(names, n)
	}
	sort.Strings(names) // "a" sorts before "a/b": parents first
	cw := &countWriter{w: bufio.NewWriterSize(w, 1<<20)}
	for i, n := range names {
		e := fs.files[n]
		var data []byte
		mode := e.mode
		switch {
		case e.dir:
			mode |= 0o040000
		case e.symlink != "":
			mode |= 0o120000
			data = []byte(e.symlink)
		case e.host != "":
			b, err := os.ReadFile(e.host)
			if err != nil {
				return cw.n, err
			}
			mode |= 0o100000
			data = b
		default:
			mode |= 0o100000
			data = e.data
		}
		writeRecord(cw, uint32(i+1), mode, n, data)
	}
	writeRecord(cw, 0, 0, "TRAILER!!!", nil)
	if cw.err != nil {
		return cw.n, cw.err
	}
	return cw.n, cw.w.(*bufio.Writer).Flush()
}

func writeRecord(w *countWriter, ino, mode uint32, name string, data []byte) {
	nlink := 1
	if mode&0o170000 == 0o040000 {
		nlink = 2
	}
	// magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor,
	// devminor, rdevmajor, rdevminor, namesize (with its NUL), check.
	fmt.Fprintf(w, "070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(name)+1, 0)
	io.WriteString(w, name)
	w.Write([]byte{0})
	w.pad()
	w.Write(data)
	w.pad()
}

// countWriter remembers the first error and how much was written, for the
// format's 4-byte alignment.
type countWriter struct {
	w   io.Writer
	n   int64
	err error
}

func (c *countWriter) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.w.Write(p)
	c.n += int64(n)
	c.err = err
	return n, err
}

func (c *countWriter) pad() {
	if r := c.n % 4; r != 0 {
		c.Write(make([]byte, 4-r))
	}
}
