package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"
)

// wireConn sends the timed deliveries: one keep-alive HTTP/1.1 connection
// per worker, each request written in one buffer and its answer parsed with
// http.ReadResponse. The load generator shares the machine's cores with the
// server it measures, so it spends as little as it can: net/http's client
// costs about twice as much per request (a transport with two goroutines per
// connection, a request object, header maps), CPU the server then lacks.
type wireConn struct {
	dial func(ctx context.Context) (net.Conn, error)
	host string
	c    net.Conn
	br   *bufio.Reader
	buf  []byte
}

// post sends body to path with the given extra headers (name, value pairs,
// already canonical) and returns the status code and at most 1 MiB of the
// answer's body. Any error closes the connection; the next post redials.
func (w *wireConn) post(ctx context.Context, path string, headers []string, body []byte) (int, []byte, error) {
	if w.c == nil {
		c, err := w.dial(ctx)
		if err != nil {
			return 0, nil, err
		}
		w.c, w.br = c, bufio.NewReaderSize(c, 16<<10)
	}
	if d, ok := ctx.Deadline(); ok {
		w.c.SetDeadline(d)
	} else {
		w.c.SetDeadline(time.Now().Add(time.Minute))
	}
	b := w.buf[:0]
	b = append(b, "POST "...)
	b = append(b, path...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, w.host...)
	b = append(b, "\r\nUser-Agent: trainhook-ingestbench\r\nContent-Type: application/json\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	for i := 0; i+1 < len(headers); i += 2 {
		b = append(b, "\r\n"...)
		b = append(b, headers[i]...)
		b = append(b, ": "...)
		b = append(b, headers[i+1]...)
	}
	b = append(b, "\r\n\r\n"...)
	b = append(b, body...)
	w.buf = b
	if _, err := w.c.Write(b); err != nil {
		w.close()
		return 0, nil, fmt.Errorf("send request: %w", err)
	}
	resp, err := http.ReadResponse(w.br, nil)
	if err != nil {
		w.close()
		return 0, nil, fmt.Errorf("read answer: %w", err)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
	}
	resp.Body.Close()
	if err != nil || resp.Close {
		w.close()
	}
	if err != nil {
		return resp.StatusCode, data, fmt.Errorf("read answer body: %w", err)
	}
	return resp.StatusCode, data, nil
}

func (w *wireConn) close() {
	if w.c != nil {
		w.c.Close()
		w.c, w.br = nil, nil
	}
}
