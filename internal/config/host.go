package config

import (
	"net/netip"
	"net/url"
	"strings"
)

// cgnat is the shared address space of carrier-grade NAT (RFC 6598): not
// routable from the internet, though not "private" in the RFC 1918 sense.
var cgnat = netip.MustParsePrefix("100.64.0.0/10")

// LocalHost reports whether Replicate's servers cannot reach host (a host
// name or IP address, IPv6 with or without brackets) from the internet, and
// why in a few words. The reason is "" for localhost and loopback addresses,
// where it goes without saying.
//
// Local means: localhost or a name under .localhost; a loopback, private
// (RFC 1918, fc00::/7), shared (CGNAT, 100.64.0.0/10), link-local,
// multicast or unspecified address; a name ending in .local (mDNS),
// .internal or .home.arpa; or a name no public DNS can resolve: a single
// label ("trainhook") or one whose last label is a number ("127.1").
func LocalHost(host string) (why string, local bool) {
	h := strings.ToLower(strings.TrimSuffix(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"), "."))
	if h == "" {
		return "no host", true
	}
	if a, err := netip.ParseAddr(h); err == nil {
		a = a.Unmap()
		switch {
		case a.IsLoopback():
			return "", true
		case a.IsUnspecified():
			return a.String() + " is the unspecified address", true
		case a.IsPrivate():
			return a.String() + " is a private address", true
		case cgnat.Contains(a):
			return a.String() + " is a carrier-grade NAT (100.64.0.0/10) address", true
		case a.IsLinkLocalUnicast(), a.IsLinkLocalMulticast():
			return a.String() + " is a link-local address", true
		case a.IsMulticast(), a.IsInterfaceLocalMulticast():
			return a.String() + " is a multicast address", true
		}
		return "", false
	}
	switch {
	case h == "localhost" || strings.HasSuffix(h, ".localhost"):
		return "", true
	case strings.HasSuffix(h, ".local"):
		return h + " is a .local name, resolved only on the local network", true
	case strings.HasSuffix(h, ".internal"):
		return h + " is an .internal name, private to a network", true
	case strings.HasSuffix(h, ".home.arpa"):
		return h + " is a .home.arpa name, private to a home network", true
	case !strings.Contains(h, "."):
		return h + " is a single-label name, which public DNS does not resolve", true
	}
	last := h[strings.LastIndexByte(h, '.')+1:]
	if strings.Trim(last, "0123456789") == "" {
		return h + " is not a public host name", true
	}
	return "", false
}

// hostOf returns the host of a URL Load has already checked.
func hostOf(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return ""
	}
	return u.Hostname()
}

// paren returns " (s)", or "" when s is empty.
func paren(s string) string {
	if s == "" {
		return ""
	}
	return " (" + s + ")"
}
