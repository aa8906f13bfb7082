package vmm

import (
	"bytes"
	"fmt"
	"io"
	"sync"
)

// maxConsoleBytes caps what one VM may print, so a guest printing in a loop
// cannot flood the host's stdout; the rest is counted and dropped.
const maxConsoleBytes = 1 << 20

// console turns PRINT hypercalls into whole lines on the host, each prefixed
// with the VM and vCPU that printed it.
type console struct {
	mu      sync.Mutex
	w       io.Writer
	name    string
	lines   []bytes.Buffer // per vCPU: the unfinished line
	written int
	dropped int
}

func newConsole(w io.Writer, name string, vcpus int) *console {
	return &console{w: w, name: name, lines: make([]bytes.Buffer, vcpus)}
}

func (c *console) write(id int, p []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			c.lines[id].Write(p)
			return
		}
		c.lines[id].Write(p[:i])
		c.emit(id)
		p = p[i+1:]
	}
}

func (c *console) emit(id int) {
	line := c.lines[id].Bytes()
	if c.written+len(line) > maxConsoleBytes {
		c.dropped += len(line) + 1
	} else if c.w != nil {
		n, _ := fmt.Fprintf(c.w, "[%s/cpu%d] %s\n", c.name, id, line)
		c.written += n
	}
	c.lines[id].Reset()
}

// flush emits unfinished lines and reports dropped output.
func (c *console) flush() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id := range c.lines {
		if c.lines[id].Len() > 0 {
			c.emit(id)
		}
	}
	if c.dropped > 0 && c.w != nil {
		fmt.Fprintf(c.w, "[%s] console: %d bytes dropped (over %d KiB)\n", c.name, c.dropped, maxConsoleBytes>>10)
	}
}
