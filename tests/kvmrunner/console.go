package main

import (
	"bufio"
	"io"
	"regexp"
	"strings"
	"sync"
	"time"
)

// The runner's kernel console (its ttyS0) is read line by line for the
// messages that mean the runner itself is stuck or broken, as opposed to a
// test failing: TCG's SVM emulation can stall a CPU, and then nothing the
// tests print can be trusted. Any of these ends the run as a runner failure.
var stallPatterns = []*regexp.Regexp{
	regexp.MustCompile(`rcu: INFO: rcu_\w+ (self-)?detected stalls?`),
	regexp.MustCompile(`BUG: soft lockup`),
	regexp.MustCompile(`[Hh]ard LOCKUP`),
	regexp.MustCompile(`INFO: task \S+ blocked for more than \d+ seconds`),
	regexp.MustCompile(`Kernel panic`),
	regexp.MustCompile(`BUG: (kernel NULL pointer|unable to handle)|kernel BUG at|Oops: `),
}

// heartbeat is init.sh's line every 5 s of the runner's time.
var heartbeat = regexp.MustCompile(`^lhpvm-runner: alive `)

// warnPattern: a kernel WARN (KVM's own sanity checks among them) is shown
// at the end of the run, but is not by itself a failure.
var warnPattern = regexp.MustCompile(`WARNING: CPU: \d+ PID: \d+ at `)

const tailLines = 40

// console watches the runner's kernel console.
type console struct {
	log     io.Writer // every line, as read (may be nil)
	onStall func()    // called once, at the first stall line

	mu       sync.Mutex
	tail     []string // the last tailLines lines
	stall    string   // the first stall line
	warnings []string
	beat     time.Time // when the last heartbeat arrived (host time)
}

// scan reads r to its end.
func (c *console) scan(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		c.line(strings.TrimRight(sc.Text(), "\r"))
	}
}

func (c *console) line(l string) {
	if c.log != nil {
		io.WriteString(c.log, l+"\n")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if heartbeat.MatchString(l) {
		c.beat = time.Now()
		return // not worth a place in the tail
	}
	c.tail = append(c.tail, l)
	if len(c.tail) > tailLines {
		c.tail = c.tail[len(c.tail)-tailLines:]
	}
	if warnPattern.MatchString(l) {
		c.warnings = append(c.warnings, l)
	}
	if c.stall != "" {
		return
	}
	for _, p := range stallPatterns {
		if p.MatchString(l) {
			c.stall = l
			if c.onStall != nil {
				go c.onStall()
			}
			return
		}
	}
}

// silentFor is how long ago the last heartbeat arrived (0: none yet).
func (c *console) silentFor() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.beat.IsZero() {
		return 0
	}
	return time.Since(c.beat)
}

// state returns the first stall line (or ""), the warnings and the tail.
func (c *console) state() (stall string, warnings, tail []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stall, append([]string(nil), c.warnings...), append([]string(nil), c.tail...)
}
