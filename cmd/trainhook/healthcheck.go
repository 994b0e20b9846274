package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// runHealthcheck asks a running server's /readyz whether it is ready, for
// container HEALTHCHECKs and service managers: an image built FROM scratch has
// no shell and no curl. Exit 0 ready, 1 not ready or unreachable.
func runHealthcheck(ctx context.Context, args []string, e env) int {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	url := fs.String("url", "", "base URL of the server (default: from PORT or ADDR, on 127.0.0.1 when they name all interfaces)")
	timeout := fs.Duration("timeout", 5*time.Second, "how long to wait for the answer")
	fs.Usage = func() {
		fmt.Fprint(e.stderr, "Usage: trainhook healthcheck [flags]\n\nAsks the server's GET /readyz whether it is ready (its database answers).\nExit status 0 ready, 1 not. /readyz needs no API token.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(e.stderr, "healthcheck: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if *timeout <= 0 {
		fmt.Fprintln(e.stderr, "healthcheck: --timeout must be positive, such as 5s")
		return 2
	}
	base := strings.TrimRight(*url, "/")
	if base == "" {
		addr, err := healthAddr(e.getenv)
		if err != nil {
			fmt.Fprintf(e.stderr, "healthcheck: %v\n", err)
			return 1
		}
		base = "http://" + addr
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/readyz", nil)
	if err != nil {
		fmt.Fprintf(e.stderr, "healthcheck: --url %q: %v\n", *url, err)
		return 2
	}
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		fmt.Fprintf(e.stderr, "healthcheck: not ready: %v\n", err)
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(e.stderr, "healthcheck: not ready: %s answered %s: %s\n", req.URL, resp.Status, strings.TrimSpace(string(body)))
		return 1
	}
	fmt.Fprintf(e.stdout, "ready: %s\n", strings.TrimSpace(string(body)))
	return 0
}

// healthAddr is where a server started with this environment listens, as
// serve reads it: PORT (all interfaces) wins over ADDR (default :8080). An
// address on all interfaces is reached on loopback.
func healthAddr(getenv func(string) string) (string, error) {
	if p := getenv("PORT"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return "", fmt.Errorf("PORT=%q: want a port number from 1 to 65535, such as 8080", p)
		}
		return net.JoinHostPort("127.0.0.1", p), nil
	}
	addr := getenv("ADDR")
	if addr == "" {
		addr = ":8080"
	}
	host, port, err := net.SplitHostPort(addr)
	if n, perr := strconv.Atoi(port); err != nil || perr != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("ADDR=%q: want host:port such as 127.0.0.1:8080 or :8080", addr)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port), nil
}
