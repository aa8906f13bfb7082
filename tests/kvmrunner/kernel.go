package main

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
)

// kernel is Debian's amd64 kernel, unpacked from its package: the image QEMU
// boots and the modules the runner loads.
type kernel struct {
	Package string // e.g. linux-image-6.1.0-57-amd64
	Version string // the package's version, e.g. 6.1.192-3
	Release string // uname -r, e.g. 6.1.0-57-amd64
	Image   string // boot/vmlinuz-<release>
	modules string // lib/modules/<release>
}

// debianKernel returns the kernel package linux-image-amd64 depends on,
// unpacked under cache (apt-get download + dpkg-deb -x the first time; no
// root needed, nothing installed). It needs the apt lists (apt-get update).
func debianKernel(cache string) (*kernel, error) {
	out, err := exec.Command("apt-cache", "depends", "linux-image-amd64").Output()
	if err != nil {
		return nil, fmt.Errorf("apt-cache depends linux-image-amd64 (run apt-get update?): %w", err)
	}
	m := regexp.MustCompile(`Depends: (linux-image-\S+)`).FindSubmatch(out)
	if m == nil {
		return nil, fmt.Errorf("apt-cache depends linux-image-amd64 names no kernel package (run apt-get update?):\n%s", out)
	}
	pkg := string(m[1])
	out, err = exec.Command("apt-cache", "policy", pkg).Output()
	if err != nil {
		return nil, fmt.Errorf("apt-cache policy %s: %w", pkg, err)
	}
	v := regexp.MustCompile(`Candidate: (\S+)`).FindSubmatch(out)
	if v == nil || string(v[1]) == "(none)" {
		return nil, fmt.Errorf("apt has no candidate for %s (run apt-get update?)", pkg)
	}
	dir := filepath.Join(cache, pkg+"_"+string(v[1]))
	if _, err := os.Stat(filepath.Join(dir, "boot")); err != nil {
		if err := unpackDeb(pkg+"="+string(v[1]), dir); err != nil {
			return nil, err
		}
	}
	k := &kernel{Package: pkg, Version: string(v[1])}
	images, _ := filepath.Glob(filepath.Join(dir, "boot", "vmlinuz-*"))
	if len(images) != 1 {
		return nil, fmt.Errorf("%s: want one boot/vmlinuz-*, found %d", dir, len(images))
	}
	k.Image = images[0]
	k.Release = strings.TrimPrefix(filepath.Base(k.Image), "vmlinuz-")
	k.modules = filepath.Join(dir, "lib", "modules", k.Release)
	return k, nil
}

// unpackDeb downloads Debian package spec and unpacks it into dir.
func unpackDeb(spec, dir string) error {
	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".fetch-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	dl := exec.Command("apt-get", "download", "-q", spec)
	dl.Dir = tmp
	if out, err := dl.CombinedOutput(); err != nil {
		return fmt.Errorf("apt-get download %s: %w\n%s", spec, err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if len(debs) != 1 {
		return fmt.Errorf("apt-get download %s: want one .deb, found %d", spec, len(debs))
	}
	x := filepath.Join(tmp, "x")
	if out, err := exec.Command("dpkg-deb", "-x", debs[0], x).CombinedOutput(); err != nil {
		return fmt.Errorf("dpkg-deb -x %s: %w\n%s", debs[0], err, out)
	}
	return os.Rename(x, dir)
}

// moduleOrder returns the .ko files to insmod, in order, for module name
// (with its dependencies first), read from each module's own .modinfo
// "depends=" (the package ships no modules.dep: depmod makes it at install).
func (k *kernel) moduleOrder(name string) ([]string, error) {
	byName := map[string]string{}
	err := filepath.WalkDir(k.modules, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.HasSuffix(p, ".ko") {
			byName[modName(filepath.Base(p))] = p
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var order []string
	seen := map[string]bool{}
	var visit func(n string, chain []string) error
	visit = func(n string, chain []string) error {
		n = modName(n)
		if seen[n] {
			return nil
		}
		p, ok := byName[n]
		if !ok {
			return fmt.Errorf("module %s (needed by %v) is not in %s (compressed modules are not supported)", n, chain, k.modules)
		}
		deps, err := modDepends(p)
		if err != nil {
			return err
		}
		for _, d := range deps {
			if err := visit(d, append(chain, n)); err != nil {
				return err
			}
		}
		seen[n] = true
		order = append(order, p)
		return nil
	}
	return order, visit(name, nil)
}

// modName is a module's name as the kernel spells it: "kvm-amd.ko" is kvm_amd.
func modName(s string) string {
	return strings.ReplaceAll(strings.TrimSuffix(s, ".ko"), "-", "_")
}

// modDepends reads the "depends=" entry of a module's .modinfo section.
func modDepends(ko string) ([]string, error) {
	f, err := elf.Open(ko)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	s := f.Section(".modinfo")
	if s == nil {
		return nil, errors.New(ko + ": no .modinfo section")
	}
	data, err := s.Data()
	if err != nil {
		return nil, err
	}
	for _, kv := range bytes.Split(data, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok {
			if len(v) == 0 {
				return nil, nil
			}
			return strings.Split(string(v), ","), nil
		}
	}
	return nil, nil
}
