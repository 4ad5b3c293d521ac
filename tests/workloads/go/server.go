// An HTTP server on a unix socket, for the real-programs end-to-end test.
// Standard library only; built offline with `go build`.
//
// Usage: server SOCKET DIR
//
// It listens on the unix socket SOCKET and keeps state in memory:
//   - a request counter (GET /count answers with the next value);
//   - a ticker goroutine that counts 10 ms ticks;
//   - 8 goroutines that keep hashing a 16 MiB buffer and folding the
//     digests into a checksum, so the runtime spreads over several threads;
//   - a map of 100 000 entries built at start.
//
// When listening it writes DIR/ready. GET /check makes it check itself:
// the map and buffer are intact, the ticker and the hashing goroutines
// still make progress, and the request counter only ever grew. It answers
// "OK" or "FAIL: <what differs>", also writes that to DIR/result, and
// GET /quit makes it exit 0.
package main

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

var (
	requests atomic.Int64
	ticks    atomic.Int64
	hashes   atomic.Int64
	bigMap   = map[int]string{}
	buffer   []byte
	mu       sync.Mutex
	lastSeen int64
)

func sumMap() uint64 {
	var s uint64
	for k, v := range bigMap {
		s += uint64(k) * uint64(len(v))
	}
	return s
}

func expectedMapSum() uint64 {
	var s uint64
	for k := 0; k < 100000; k++ {
		s += uint64(k) * uint64(len(fmt.Sprintf("value-%d", k*7)))
	}
	return s
}

func bufferOK() bool {
	for i := 0; i < len(buffer); i += 8 {
		if binary.LittleEndian.Uint64(buffer[i:]) != uint64(i)*2654435761 {
			return false
		}
	}
	return true
}

func check() string {
	var problems []string
	if len(bigMap) != 100000 || sumMap() != expectedMapSum() {
		problems = append(problems, "the map of 100000 entries changed")
	}
	if !bufferOK() {
		problems = append(problems, "the 16 MiB buffer changed")
	}
	t0, h0 := ticks.Load(), hashes.Load()
	time.Sleep(300 * time.Millisecond)
	if ticks.Load() <= t0 {
		problems = append(problems, "the ticker goroutine stopped ticking")
	}
	if hashes.Load() <= h0 {
		problems = append(problems, "the hashing goroutines stopped")
	}
	if runtime.NumGoroutine() < 10 {
		problems = append(problems, fmt.Sprintf("only %d goroutines left", runtime.NumGoroutine()))
	}
	if len(problems) == 0 {
		return "OK\n"
	}
	return "FAIL: " + strings.Join(problems, "; ") + "\n"
}

func writeAtomically(path, text string) {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "write", tmp, err)
		os.Exit(1)
	}
	if err := os.Rename(tmp, path); err != nil {
		fmt.Fprintln(os.Stderr, "rename", tmp, err)
		os.Exit(1)
	}
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: server SOCKET DIR")
		os.Exit(2)
	}
	sock, dir := os.Args[1], os.Args[2]
	for k := 0; k < 100000; k++ {
		bigMap[k] = fmt.Sprintf("value-%d", k*7)
	}
	buffer = make([]byte, 16<<20)
	for i := 0; i < len(buffer); i += 8 {
		binary.LittleEndian.PutUint64(buffer[i:], uint64(i)*2654435761)
	}
	go func() {
		t := time.NewTicker(10 * time.Millisecond)
		for range t.C {
			ticks.Add(1)
		}
	}()
	for g := 0; g < 8; g++ {
		go func(g int) {
			sum := sha256.Sum256([]byte{byte(g)})
			for {
				for off := 0; off < len(buffer); off += 1 << 20 {
					h := sha256.New()
					h.Write(sum[:])
					h.Write(buffer[off : off+(1<<20)])
					copy(sum[:], h.Sum(nil))
					hashes.Add(1)
					time.Sleep(time.Millisecond)
				}
			}
		}(g)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("/count", func(w http.ResponseWriter, r *http.Request) {
		n := requests.Add(1)
		mu.Lock()
		if n <= lastSeen {
			n = -1
		} else {
			lastSeen = n
		}
		mu.Unlock()
		fmt.Fprintf(w, "%d\n", n)
	})
	mux.HandleFunc("/check", func(w http.ResponseWriter, r *http.Request) {
		res := check()
		writeAtomically(filepath.Join(dir, "result"), res)
		fmt.Fprint(w, res)
	})
	done := make(chan struct{})
	mux.HandleFunc("/quit", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "bye\n")
		close(done)
	})

	ln, err := net.Listen("unix", sock)
	if err != nil {
		fmt.Fprintln(os.Stderr, "listen", sock, err)
		os.Exit(1)
	}
	srv := &http.Server{Handler: mux}
	go func() {
		if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
			fmt.Fprintln(os.Stderr, "serve:", err)
			os.Exit(1)
		}
	}()
	writeAtomically(filepath.Join(dir, "ready"), "ready\n")
	fmt.Printf("server %d: listening on %s\n", os.Getpid(), sock)
	<-done
	time.Sleep(50 * time.Millisecond)
	fmt.Printf("server %d: quitting after %d requests\n", os.Getpid(), requests.Load())
	os.Exit(0)
}
