// Command kvmrunner runs lhpvm's kvm end-to-end tests on real KVM on a host
// that has no /dev/kvm: it boots Debian's kernel under QEMU's TCG, whose
// emulated AMD CPU has SVM with nested paging, loads kvm_amd there, and runs
// the test binary (built here, carried in) on the /dev/kvm that appears. See
// README.md beside this file.
//
//	go run ./tests/kvmrunner [flags] test [-- test flags]   the kvm suite, as go test -json
//	go run ./tests/kvmrunner [flags] bench                  the kvm benchmarks (functional figures)
//	go run ./tests/kvmrunner [flags] exec -- CMD ARGS...    a command in the runner (lhpvm is /lhpvm/artifacts/lhpvm)
//	go run ./tests/kvmrunner [flags] shell                  a shell on the runner's console
//
// The job's status is kvmrunner's exit status. A runner that cannot boot,
// cannot load kvm_amd, stalls (its kernel reports an RCU stall, a soft or
// hard lockup, a hung task, a panic or an oops) or does not finish in
// -timeout is a failure, reported with the console's last lines.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	_ "embed"

	"github.com/lhpvm/lhpvm/internal/host"
)

//go:embed init.sh
var initScript []byte

// kvmAMDParams are kvm_amd's module parameters in the runner, each a
// workaround for TCG's SVM emulation (README.md: why, and the reproduction).
const kvmAMDParams = ""

type options struct {
	race      bool
	timeout   time.Duration
	testTime  time.Duration
	run       string
	work      string
	cache     string
	mem       int
	smp       int
	mttcg     bool
	kvmParams string
}

func main() {
	var o options
	flag.BoolVar(&o.race, "race", false, "test: run the race-enabled test binary (it links libc, carried in with it)")
	flag.DurationVar(&o.timeout, "timeout", 60*time.Minute, "the whole run, boot to power-off; past it the runner has failed")
	flag.DurationVar(&o.testTime, "test.timeout", 40*time.Minute, "test: the test binary's own -test.timeout (it then dumps its goroutines)")
	flag.StringVar(&o.run, "run", "", "test, bench: only the tests (benchmarks) matching this regexp, as go test -run (-bench)")
	flag.StringVar(&o.work, "work", "bin/kvmrunner", "where the runner's binaries, initramfs and console.log go")
	flag.StringVar(&o.cache, "cache", defaultCache(), "where Debian's kernel package is unpacked, once per version")
	flag.IntVar(&o.mem, "m", 4096, "the runner's RAM in MiB")
	flag.IntVar(&o.smp, "smp", 2, "the runner's CPU count (the tests overcommit onto 2)")
	flag.BoolVar(&o.mttcg, "mttcg", false, "multi-threaded TCG (QEMU's default; it stalls the runner: README.md)")
	flag.StringVar(&o.kvmParams, "kvm-amd", kvmAMDParams, "kvm_amd module parameters in the runner")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: kvmrunner [flags] test|bench|shell|exec [-- args]\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() < 1 {
		flag.Usage()
		os.Exit(2)
	}
	mode, args := flag.Arg(0), flag.Args()[1:]
	if len(args) > 0 && args[0] == "--" {
		args = args[1:]
	}
	switch mode {
	case "test", "bench", "shell", "exec":
	default:
		flag.Usage()
		os.Exit(2)
	}
	if mode == "exec" && len(args) == 0 {
		fmt.Fprintln(os.Stderr, "kvmrunner exec: no command")
		os.Exit(2)
	}
	code, err := run(o, mode, args)
	if err != nil {
		fmt.Fprintf(os.Stderr, "kvmrunner: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

func defaultCache() string {
	d, err := os.UserCacheDir()
	if err != nil {
		d = os.TempDir()
	}
	return filepath.Join(d, "lhpvm", "kvmrunner")
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "kvmrunner: "+format+"\n", args...)
}

// runnerError is a failure of the runner, not of the job.
type runnerError struct{ msg string }

func (e *runnerError) Error() string { return "runner failure: " + e.msg }

func run(o options, mode string, args []string) (int, error) {
	start := time.Now()
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		return 1, errors.New("qemu-system-x86_64 not found: install Debian's qemu-system-x86 (make kvm-runner-deps)")
	}
	busybox, err := findBusybox()
	if err != nil {
		return 1, err
	}
	root, err := repoRoot()
	if err != nil {
		return 1, err
	}
	if err := os.MkdirAll(o.cache, 0o755); err != nil {
		return 1, err
	}
	work := o.work
	if !filepath.IsAbs(work) {
		work = filepath.Join(root, work)
	}
	if err := os.MkdirAll(work, 0o755); err != nil {
		return 1, err
	}
	k, err := debianKernel(o.cache)
	if err != nil {
		return 1, err
	}
	mods, err := k.moduleOrder("kvm-amd")
	if err != nil {
		return 1, err
	}

	fs := newInitramfs()
	for _, d := range []string{"proc", "sys", "dev", "tmp", "sbin", "usr/bin", "lhpvm/tests"} {
		fs.Dir(d)
	}
	if err := fs.Executable("bin/busybox", busybox); err != nil {
		return 1, err
	}
	fs.Data("init", 0o755, initScript)
	var modPaths []string
	for _, m := range mods {
		p := "lhpvm/modules/" + filepath.Base(m)
		if err := fs.File(p, m); err != nil {
			return 1, err
		}
		modPaths = append(modPaths, "/"+p)
	}
	if err := carryTests(fs, o, root, work, mode); err != nil {
		return 1, err
	}
	job, err := jobScript(o, mode, args)
	if err != nil {
		return 2, err
	}
	fs.Data("lhpvm/job.sh", 0o755, []byte(job))
	shell := "0"
	if mode == "shell" {
		shell = "1"
	}
	fs.Data("lhpvm/runner.env", 0o644, []byte(fmt.Sprintf("MODULES=%q\nKVM_AMD_PARAMS=%q\nSHELL_MODE=%s\n",
		strings.Join(modPaths, " "), o.kvmParams, shell)))
	initrd := filepath.Join(work, "initramfs.cpio")
	f, err := os.Create(initrd)
	if err != nil {
		return 1, err
	}
	n, err := fs.WriteTo(f)
	if err = errors.Join(err, f.Close()); err != nil {
		return 1, fmt.Errorf("writing %s: %w", initrd, err)
	}
	tcg := "tcg,thread=single"
	if o.mttcg {
		tcg = "tcg,thread=multi"
	}
	logf("booting %s (%s %s) under QEMU %s -cpu max -smp %d, kvm_amd %s; initramfs %d MiB; built in %.0fs",
		k.Release, k.Package, k.Version, tcg, o.smp, o.kvmParams, n>>20, time.Since(start).Seconds())
	qargs := []string{"-accel", tcg, "-cpu", "max", "-smp", strconv.Itoa(o.smp), "-m", strconv.Itoa(o.mem),
		"-nodefaults", "-no-reboot", "-display", "none",
		"-kernel", k.Image, "-initrd", initrd,
		"-append", "console=ttyS0 quiet panic=-1"}
	code, err := boot(qemu, qargs, work, o, mode)
	logf("%s in the emulated runner (QEMU TCG, SVM): %.0fs in all, console log %s",
		mode, time.Since(start).Seconds(), filepath.Join(work, "console.log"))
	return code, err
}

func findBusybox() (string, error) {
	for _, p := range []string{"/bin/busybox", "/usr/bin/busybox"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath("busybox"); err == nil {
		return p, nil
	}
	return "", errors.New("busybox not found: install Debian's busybox-static (make kvm-runner-deps)")
}

func repoRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("run kvmrunner inside the lhpvm module")
	}
	return filepath.Dir(mod), nil
}

// carryTests builds the test binary and the artifacts the tests would build
// with go and gcc (which the runner lacks), and lays them out in the runner
// as in the repository, so the tests find them at the same relative paths.
func carryTests(fs *initramfs, o options, root, work, mode string) error {
	bin := filepath.Join(work, "tests.test")
	if err := goCmd(root, []string{"CGO_ENABLED=0"}, "test", "-c", "-o", bin, "./tests"); err != nil {
		return err
	}
	arts := filepath.Join(work, "artifacts")
	if err := os.RemoveAll(arts); err != nil {
		return err
	}
	pre := exec.Command(bin)
	pre.Dir = filepath.Join(root, "tests")
	pre.Env = append(os.Environ(), "LHPVM_PREBUILD="+arts)
	if out, err := pre.CombinedOutput(); err != nil {
		return fmt.Errorf("building the tests' artifacts (LHPVM_PREBUILD): %w\n%s", err, out)
	}
	testBin := bin
	if o.race && mode == "test" {
		testBin = filepath.Join(work, "tests.race.test")
		if err := goCmd(root, nil, "test", "-race", "-c", "-o", testBin, "./tests"); err != nil {
			return err
		}
	}
	t2j := filepath.Join(work, "test2json")
	if err := goCmd(root, []string{"CGO_ENABLED=0"}, "build", "-o", t2j, "cmd/test2json"); err != nil {
		return err
	}
	if err := fs.Executable("lhpvm/tests/tests.test", testBin); err != nil {
		return err
	}
	if err := fs.Executable("lhpvm/bin/test2json", t2j); err != nil {
		return err
	}
	// The artifacts gcc makes link libc (the C references): each goes
	// in with its libraries.
	ents, err := os.ReadDir(arts)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if err := fs.Executable("lhpvm/artifacts/"+e.Name(), filepath.Join(arts, e.Name())); err != nil {
			return err
		}
	}
	// The files the tests read from the tree (TestK8sManifests: the
	// manifests it checks against --shard auto).
	for _, d := range []string{"tests/testdata", "guest/prebuilt", "deploy/k8s"} {
		if err := fs.Tree("lhpvm/"+d, filepath.Join(root, d)); err != nil {
			return err
		}
	}
	// TestExperimentProgress drives a terminal through script(1), which
	// busybox lacks; util-linux's comes with its libraries.
	if p, err := exec.LookPath("script"); err == nil {
		if err := fs.Executable("usr/bin/script", p); err != nil {
			return err
		}
	}
	return nil
}

func goCmd(dir string, env []string, args ...string) error {
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

// testPackage is the import path test2json names the events with.
const testPackage = "github.com/lhpvm/lhpvm/tests"

// jobScript is the shell script the runner runs in /lhpvm/tests.
func jobScript(o options, mode string, args []string) (string, error) {
	var b strings.Builder
	b.WriteString("export LHPVM_REQUIRE_BACKENDS=kvm LHPVM_ARTIFACTS=/lhpvm/artifacts\n")
	b.WriteString("export PATH=/lhpvm/artifacts:$PATH\n")
	switch mode {
	case "test", "shell":
		// Every end-to-end test, on kvm only: the ptrace subtests run on
		// the host, natively.
		cmd := []string{"/lhpvm/bin/test2json", "-t", "-p", testPackage, "./tests.test", "-test.v=test2json",
			"-test.count=1", "-test.timeout=" + o.testTime.String(), "-test.skip=/^ptrace$"}
		if o.run != "" {
			cmd = append(cmd, "-test.run="+o.run)
		}
		cmd = append(cmd, args...)
		b.WriteString("exec " + shellQuote(cmd) + "\n")
	case "bench":
		pat := "/^kvm$"
		if o.run != "" {
			pat = o.run + "/^kvm$"
		}
		cmd := append([]string{"./tests.test", "-test.run=^$", "-test.bench=" + pat, "-test.benchtime=5x"}, args...)
		b.WriteString("exec " + shellQuote(cmd) + "\n")
	case "exec":
		b.WriteString("exec " + shellQuote(args) + "\n")
	}
	return b.String(), nil
}

func shellQuote(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}

var exitMarker = regexp.MustCompile(`^lhpvm-runner: exit (\d+)$`)

// benchLabel marks every benchmark figure measured in the runner.
const benchLabel = "  [emulated (TCG): functional, not a performance figure]"

// boot runs QEMU to its end and returns the job's exit status.
func boot(qemu string, args []string, work string, o options, mode string) (int, error) {
	logFile, err := os.Create(filepath.Join(work, "console.log"))
	if err != nil {
		return 1, err
	}
	defer logFile.Close()
	cmd := exec.Command(qemu, args...)
	cmd.Stderr = os.Stderr
	// QEMU dies with us: a runner never outlives the make that started it.
	host.DiesWithParent(cmd)
	var conR, jobR *os.File
	if mode == "shell" {
		cmd.Args = append(cmd.Args, "-chardev", "stdio,id=con,signal=off", "-serial", "chardev:con",
			"-chardev", "null,id=job", "-serial", "chardev:job")
		cmd.Stdin, cmd.Stdout = os.Stdin, os.Stdout
	} else {
		// ttyS0, the kernel's console, and ttyS1, the job's output,
		// each on a pipe of ours (QEMU opens /dev/fd/N).
		var conW, jobW *os.File
		if conR, conW, err = os.Pipe(); err != nil {
			return 1, err
		}
		if jobR, jobW, err = os.Pipe(); err != nil {
			return 1, err
		}
		cmd.ExtraFiles = []*os.File{conW, jobW}
		cmd.Args = append(cmd.Args, "-chardev", "file,id=con,path=/dev/fd/3", "-serial", "chardev:con",
			"-chardev", "file,id=job,path=/dev/fd/4", "-serial", "chardev:job")
		defer conW.Close()
		defer jobW.Close()
	}
	if err := cmd.Start(); err != nil {
		return 1, fmt.Errorf("starting %s: %w", qemu, err)
	}
	for _, f := range cmd.ExtraFiles {
		f.Close() // QEMU has them now; EOF comes when it exits
	}
	var killOnce sync.Once
	why := ""
	kill := func(reason string) {
		killOnce.Do(func() {
			why = reason
			cmd.Process.Kill()
		})
	}
	con := &console{log: logFile}
	con.onStall = func() {
		time.Sleep(10 * time.Second) // the stall report goes on for a while
		kill("its kernel reported a stall")
	}
	var wg sync.WaitGroup
	job := &jobOutput{mode: mode, code: -1}
	if mode != "shell" {
		wg.Add(2)
		go func() { defer wg.Done(); con.scan(conR) }()
		go func() { defer wg.Done(); job.copy(jobR, os.Stdout) }()
	}
	timer := time.AfterFunc(o.timeout, func() { kill(fmt.Sprintf("it did not finish in %v", o.timeout)) })
	// The runner's userspace beats every 5 s of its time; a minute
	// without a beat is a runner that no longer runs its userspace,
	// whatever its kernel says (a stall can be silent).
	stopWatch := make(chan struct{})
	go func() {
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-stopWatch:
				return
			case <-t.C:
				if d := con.silentFor(); d > heartbeatLimit {
					kill(fmt.Sprintf("its userspace stopped running: no heartbeat for %v", d.Round(time.Second)))
				}
			}
		}
	}()
	waitErr := cmd.Wait()
	timer.Stop()
	close(stopWatch)
	wg.Wait()
	if mode == "shell" {
		return 0, waitErr
	}
	stall, warnings, tail := con.state()
	for _, w := range warnings {
		logf("the runner's kernel warned: %s", w)
	}
	last := fmt.Sprintf("last console lines:\n%s\nthe job's last lines:\n%s", indent(tail), indent(job.tail))
	switch {
	case stall != "":
		return 1, &runnerError{fmt.Sprintf("its kernel stalled: %q\n%s", stall, last)}
	case why != "":
		return 1, &runnerError{fmt.Sprintf("%s\n%s", why, last)}
	case job.code < 0:
		return 1, &runnerError{fmt.Sprintf("it ended without the job's exit status (QEMU: %v)\n%s", waitErr, last)}
	case job.code == 125:
		return 1, &runnerError{fmt.Sprintf("its init gave up (see its message above)\n%s", last)}
	}
	return job.code, nil
}

// heartbeatLimit is how long the runner may go without a heartbeat.
const heartbeatLimit = time.Minute

// jobOutput is the job's side of the runner: its ttyS1.
type jobOutput struct {
	mode string
	code int      // the job's exit status; -1: none seen
	tail []string // its last lines, for a failure report
}

// copy copies the job's output to w and the runner's own lines to stderr,
// and keeps the job's exit status.
func (j *jobOutput) copy(r io.Reader, w io.Writer) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		l := strings.TrimRight(sc.Text(), "\r")
		if m := exitMarker.FindStringSubmatch(l); m != nil {
			j.code, _ = strconv.Atoi(m[1])
			continue
		}
		if strings.HasPrefix(l, "lhpvm-runner: ") {
			logf("%s", strings.TrimPrefix(l, "lhpvm-runner: "))
			continue
		}
		if j.mode == "bench" && strings.HasPrefix(l, "Benchmark") && strings.Contains(l, "\t") {
			l += benchLabel
		}
		j.tail = append(j.tail, l)
		if len(j.tail) > 10 {
			j.tail = j.tail[1:]
		}
		fmt.Fprintln(w, l)
	}
}

func indent(lines []string) string {
	return "    " + strings.Join(lines, "\n    ")
}
