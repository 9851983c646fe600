package pgcluster

import (
	"bytes"
	"io"
	"os"
	"sync"
	"time"
)

// tailer copies new lines of the server log files to Options.Log, each line
// prefixed with its server's name. pg_ctl -l writes the files; following them
// keeps the servers independent of our process.
type tailer struct {
	w    io.Writer
	quit chan struct{}
	done chan struct{}

	mu    sync.Mutex // guards files
	files []*tailFile
}

type tailFile struct {
	prefix  []byte
	path    string
	offset  int64
	partial []byte // an unfinished last line, held until its newline comes
}

func startTail(w io.Writer) *tailer {
	t := &tailer{w: w, quit: make(chan struct{}), done: make(chan struct{})}
	go t.loop()
	return t
}

func (t *tailer) add(name, path string) {
	t.mu.Lock()
	t.files = append(t.files, &tailFile{prefix: []byte("[" + name + "] "), path: path})
	t.mu.Unlock()
}

func (t *tailer) loop() {
	defer close(t.done)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-t.quit:
			t.pass(true)
			return
		case <-tick.C:
			t.pass(false)
		}
	}
}

// pass copies what was appended since the last pass; final also flushes an
// unfinished last line.
func (t *tailer) pass(final bool) {
	t.mu.Lock()
	files := append([]*tailFile(nil), t.files...)
	t.mu.Unlock()
	buf := make([]byte, 32<<10)
	for _, f := range files {
		var out bytes.Buffer
		for {
			n := readAt(f.path, f.offset, buf)
			if n == 0 {
				break
			}
			f.offset += int64(n)
			f.partial = append(f.partial, buf[:n]...)
			for {
				i := bytes.IndexByte(f.partial, '\n')
				if i < 0 {
					break
				}
				out.Write(f.prefix)
				out.Write(f.partial[:i+1])
				f.partial = f.partial[i+1:]
			}
		}
		if final && len(f.partial) > 0 {
			out.Write(f.prefix)
			out.Write(f.partial)
			out.WriteByte('\n')
			f.partial = nil
		}
		if out.Len() > 0 {
			_, _ = t.w.Write(out.Bytes()) // a failing log sink must not stop the cluster
		}
	}
}

func readAt(path string, offset int64, buf []byte) int {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	n, _ := f.ReadAt(buf, offset)
	return n
}

func (t *tailer) stop() {
	close(t.quit)
	<-t.done
}
