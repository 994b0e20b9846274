package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// buildBinary builds trainhook into a temporary directory, or returns the
// one --binary names.
func buildBinary(ctx context.Context, o options) (string, func(), error) {
	if o.binary != "" {
		return o.binary, func() {}, nil
	}
	root, err := moduleRoot(ctx)
	if err != nil {
		return "", nil, err
	}
	dir, err := os.MkdirTemp("", "soak-bin")
	if err != nil {
		return "", nil, err
	}
	bin := filepath.Join(dir, "trainhook")
	args := []string{"build", "-o", bin}
	if o.race {
		args = append(args, "-race")
	}
	cmd := exec.CommandContext(ctx, "go", append(args, "./cmd/trainhook")...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("build trainhook: %w\n%s", err, out)
	}
	return bin, func() { os.RemoveAll(dir) }, nil
}

func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("run the soak inside the trainhook module (go run ./internal/cmd/soak), or pass --binary")
	}
	return filepath.Dir(gomod), nil
}

// freePort returns a loopback address nobody listens on right now.
func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// instance is one `trainhook serve` process, restarted on the same address
// after each kill. Its stdout and stderr are appended to one log file.
type instance struct {
	n    int
	bin  string
	addr string
	env  []string
	log  string // path of the log file

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	up     atomic.Bool
	starts int
}

func (in *instance) url() string { return "http://" + in.addr }

// start runs the process and waits until /readyz answers 200.
func (in *instance) start(ctx context.Context) error {
	f, err := os.OpenFile(in.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	in.mu.Lock()
	in.starts++
	fmt.Fprintf(f, "{\"soak\":\"start %d of instance %d\",\"time\":%q}\n", in.starts, in.n, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(in.bin, "serve")
	cmd.Env = in.env
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		in.mu.Unlock()
		f.Close()
		return fmt.Errorf("start instance %d: %w", in.n, err)
	}
	exited := make(chan struct{})
	in.cmd, in.exited = cmd, exited
	in.mu.Unlock()
	go func() {
		_ = cmd.Wait()
		f.Close()
		close(exited)
	}()

	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("instance %d exited during start-up; see %s:\n%s", in.n, in.log, tail(in.log, 2000))
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		if resp, err := client.Get(in.url() + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				in.up.Store(true)
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("instance %d did not become ready within 60s; see %s", in.n, in.log)
}

// kill sends SIGKILL and waits for the process to be gone.
func (in *instance) kill() {
	in.up.Store(false)
	in.mu.Lock()
	cmd, exited := in.cmd, in.exited
	in.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-exited
}

// stop ends the process gracefully (SIGTERM), killing it if it lingers.
func (in *instance) stop() {
	in.up.Store(false)
	in.mu.Lock()
	cmd, exited := in.cmd, in.exited
	in.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-exited
	}
}

func tail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return ""
	}
	if fi.Size() > n {
		_, _ = f.Seek(fi.Size()-n, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	return string(b)
}

// cluster is the set of instances and, with more than one, the proxy in
// front of them that APP_URL points at (a load balancer's stand-in).
type cluster struct {
	instances []*instance
	next      atomic.Uint64
	proxy     *http.Server
	proxyURL  string
}

// live returns the instances up now, starting at a rotating offset.
func (c *cluster) live() []*instance {
	start := int(c.next.Add(1))
	var out []*instance
	for i := range c.instances {
		in := c.instances[(start+i)%len(c.instances)]
		if in.up.Load() {
			out = append(out, in)
		}
	}
	return out
}

// pick returns a base URL to send an API call to: a live instance, round
// robin; any instance when none is up (the call then fails and is retried).
func (c *cluster) pick() string {
	if l := c.live(); len(l) > 0 {
		return l[0].url()
	}
	return c.instances[int(c.next.Add(1))%len(c.instances)].url()
}

// startProxy listens on a free loopback port and forwards each request to
// a live instance, trying the next one when a connection fails, as a load
// balancer with health checks would.
func (c *cluster) startProxy() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	transport := &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: 30 * time.Second}
	c.proxyURL = "http://" + ln.Addr().String()
	c.proxy = &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, err := io.ReadAll(io.LimitReader(r.Body, 256<<20))
			if err != nil {
				http.Error(w, "proxy: read body: "+err.Error(), http.StatusBadGateway)
				return
			}
			for _, in := range c.live() {
				req, _ := http.NewRequestWithContext(r.Context(), r.Method, in.url()+r.URL.RequestURI(), bytes.NewReader(body))
				req.Header = r.Header.Clone()
				resp, err := transport.RoundTrip(req)
				if err != nil {
					continue
				}
				for k, v := range resp.Header {
					w.Header()[k] = v
				}
				w.WriteHeader(resp.StatusCode)
				_, _ = io.Copy(w, resp.Body)
				resp.Body.Close()
				return
			}
			http.Error(w, "proxy: no instance is up", http.StatusBadGateway)
		}),
	}
	go func() { _ = c.proxy.Serve(ln) }()
	return nil
}

func (c *cluster) stop() {
	for _, in := range c.instances {
		in.stop()
	}
	if c.proxy != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = c.proxy.Shutdown(ctx)
	}
}

// scanLogs counts what trainhook's logs say went badly: panics, data races
// and error-level lines (by message).
func (c *cluster) scanLogs() (panics, races int, errs map[string]int) {
	errs = map[string]int{}
	for _, in := range c.instances {
		b, err := os.ReadFile(in.log)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			switch {
			case strings.HasPrefix(line, "panic:") || strings.HasPrefix(line, "fatal error:"):
				panics++
			case strings.Contains(line, "WARNING: DATA RACE"):
				races++
			case strings.Contains(line, `"level":"ERROR"`):
				msg := line
				if i := strings.Index(line, `"msg":"`); i >= 0 {
					msg = line[i+7:]
					if j := strings.Index(msg, `"`); j >= 0 {
						msg = msg[:j]
					}
				}
				errs[msg]++
			}
		}
	}
	return panics, races, errs
}
