package training

import (
	"strconv"
	"strings"
)

// MaxLogTail is how much of the end of a training's log a record keeps.
const MaxLogTail = 8 << 10

// ParseProgress finds the last tqdm-style progress line in logs, such as
// " 40%|####      | 400/1000 [00:12<00:18, 33.1it/s]". It reads from the end
// because logs can be megabytes long and only the latest line matters.
func ParseProgress(logs string) (Progress, bool) {
	rest := logs
	for {
		i := strings.LastIndex(rest, "%|")
		if i < 0 {
			return Progress{}, false
		}
		start := strings.LastIndexAny(rest[:i], "\n\r") + 1
		end := len(rest)
		if j := strings.IndexAny(rest[i:], "\n\r"); j >= 0 {
			end = i + j
		}
		if p, ok := parseProgressLine(rest[start:end]); ok {
			return p, true
		}
		rest = rest[:start]
	}
}

func parseProgressLine(line string) (Progress, bool) {
	i := strings.Index(line, "%|")
	if i < 0 {
		return Progress{}, false
	}
	j := i
	for j > 0 && (line[j-1] >= '0' && line[j-1] <= '9' || line[j-1] == '.') {
		j--
	}
	pct, err := strconv.ParseFloat(line[j:i], 64)
	if err != nil || pct < 0 || pct > 100 {
		return Progress{}, false
	}
	p := Progress{Percent: pct}
	// After the bar: "| 400/1000 ..."
	bar := line[i+2:]
	k := strings.IndexByte(bar, '|')
	if k < 0 {
		return p, true
	}
	fields := strings.Fields(bar[k+1:])
	if len(fields) == 0 {
		return p, true
	}
	step, total, found := strings.Cut(fields[0], "/")
	if !found {
		return p, true
	}
	s, err1 := strconv.Atoi(step)
	t, err2 := strconv.Atoi(total)
	if err1 == nil && err2 == nil && s >= 0 && t > 0 && s <= t {
		p.Step, p.Total = s, t
	}
	// "[00:12<00:18, 33.1it/s]": elapsed, then the time left.
	if _, times, ok := strings.Cut(bar[k+1:], "["); ok {
		if _, left, ok := strings.Cut(times, "<"); ok {
			left, _, _ = strings.Cut(left, ",")
			left, _, _ = strings.Cut(left, "]")
			if secs, ok := clockSeconds(strings.TrimSpace(left)); ok {
				p.ETASeconds = secs
			}
		}
	}
	return p, true
}

// clockSeconds reads tqdm's "MM:SS" or "H:MM:SS".
func clockSeconds(s string) (int, bool) {
	parts := strings.Split(s, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return 0, false
	}
	total := 0
	for i, part := range parts {
		n, err := strconv.Atoi(part)
		if err != nil || n < 0 || i > 0 && n >= 60 {
			return 0, false
		}
		total = total*60 + n
	}
	return total, true
}

// LogTail returns the end of logs, at most MaxLogTail bytes, cut at a line
// start when one is near so the first line shown is whole.
func LogTail(logs string) string {
	if len(logs) <= MaxLogTail {
		return logs
	}
	tail := logs[len(logs)-MaxLogTail:]
	if i := strings.IndexByte(tail, '\n'); i >= 0 && i < 512 {
		tail = tail[i+1:]
	}
	// Do not start in the middle of a UTF-8 sequence.
	for len(tail) > 0 && tail[0]&0xC0 == 0x80 {
		tail = tail[1:]
	}
	return tail
}
