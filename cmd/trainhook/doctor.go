package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/trainhook/trainhook/internal/apiclient"
	"github.com/trainhook/trainhook/internal/config"
	"github.com/trainhook/trainhook/internal/fakereplicate"
	"github.com/trainhook/trainhook/internal/notify"
	"github.com/trainhook/trainhook/internal/replicate"
	"github.com/trainhook/trainhook/internal/store/postgres"
	"github.com/trainhook/trainhook/internal/store/sqlite"
	"github.com/trainhook/trainhook/internal/webhook"
)

// largeProbe is the size of the big test delivery: Replicate's training
// webhooks carry the whole log, and several MB is ordinary.
const largeProbe = 5 << 20

func runDoctor(ctx context.Context, args []string, e env) int {
	fs := newFlagSet("doctor", e)
	asJSON := fs.Bool("json", false, "print the checks as JSON")
	timeout := fs.Duration("timeout", 5*time.Second, "time limit of each network check (the 5 MiB delivery gets three times as long)")
	appURL := fs.String("app-url", "", "check this APP_URL instead of the environment's (as serve --app-url)")
	db := fs.String("database-url", "", "check this DATABASE_URL instead of the environment's (as serve --database-url)")
	webhooks := fs.String("webhooks", "", "auto, on or off (as serve --webhooks)")
	strict := fs.Bool("strict", false, "fail on warnings too: for CI and production, where a warning (no https, a local address) is a fault")
	fs.Usage = usageFunc(fs, e, "doctor [flags]", `
Checks the configuration in this environment (the variables trainhook serve
reads) from end to end, and says how to fix what is wrong: APP_URL and the
webhook URL it gives, whether the endpoint answers through APP_URL without a
redirect, whether a signed test delivery and a 5 MiB one are accepted (they
are answered without being stored), the signing key, the Replicate token,
the database (opened read-only), and the mode with its reason.

Run it where serve runs, with the same environment. Checks that cannot run
because an earlier one failed are shown as skipped. A warning (⚠) is what a
correct local setup has, such as no https or a local APP_URL, but
production must not; --strict counts warnings as failures.

Exit status: 0 when no check fails (warnings allowed, unless --strict); 1
when any fails; 2 for a usage error.`)
	if _, code, ok := parseFlags(fs, args, e, 0, ""); !ok {
		return code
	}
	if *timeout <= 0 {
		fmt.Fprintln(e.stderr, "doctor: --timeout must be positive")
		return exitUsage
	}
	set := map[string]string{}
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "app-url":
			set[config.EnvAppURL] = *appURL
		case "database-url":
			set[config.EnvDatabaseURL] = *db
		case "webhooks":
			set[config.EnvWebhooks] = *webhooks
		}
	})

	d := newDoctor(config.Override(e.getenv, set), *timeout)
	d.run(ctx)
	if ctx.Err() != nil {
		fmt.Fprintln(e.stderr, "doctor: interrupted")
		return exitInterrupted
	}
	if *asJSON {
		writeJSON(e.stdout, d.report())
	} else {
		d.print(e.stdout)
	}
	if d.failed() || *strict && d.warned() {
		return exitFailed
	}
	return exitOK
}

// Check statuses.
const (
	checkPass = "pass"
	checkWarn = "warn" // fine on a developer's machine, a fault in production
	checkFail = "fail"
	checkSkip = "skip"
)

// check is one line of the checklist.
type check struct {
	ID     string `json:"id"`
	Title  string `json:"title"`
	Status string `json:"status"` // pass, warn, fail or skip
	Detail string `json:"detail,omitempty"`
	Fix    string `json:"fix,omitempty"` // for a failure or a warning: what to do
}

// doctor runs the checks in order; later ones use what earlier ones found.
type doctor struct {
	getenv  func(string) string
	timeout time.Duration
	hc      *http.Client // never follows redirects

	cfg     config.Config
	cfgErr  error
	badVars map[string]bool

	checks []check

	// Found along the way.
	client     *replicate.Client
	tokenOK    bool
	accountKey *replicate.Key
	signKey    *replicate.Key // what the test deliveries are signed with
	reached    bool           // the endpoint answered through APP_URL
	small      *delivery      // the answer to the small signed delivery
	redirected bool
	accepted   bool
}

func newDoctor(getenv func(string) string, timeout time.Duration) *doctor {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.ResponseHeaderTimeout = timeout
	tr.TLSHandshakeTimeout = timeout
	return &doctor{
		getenv:  getenv,
		timeout: timeout,
		hc: &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}},
		badVars: map[string]bool{},
	}
}

func (d *doctor) add(c check) { d.checks = append(d.checks, c) }

func (d *doctor) pass(id, title, detail string) {
	d.add(check{ID: id, Title: title, Status: checkPass, Detail: detail})
}

func (d *doctor) fail(id, title, detail, fix string) {
	d.add(check{ID: id, Title: title, Status: checkFail, Detail: detail, Fix: fix})
}

func (d *doctor) warn(id, title, detail, fix string) {
	d.add(check{ID: id, Title: title, Status: checkWarn, Detail: detail, Fix: fix})
}

func (d *doctor) warned() bool {
	for _, c := range d.checks {
		if c.Status == checkWarn {
			return true
		}
	}
	return false
}

func (d *doctor) skip(id, title, reason string) {
	d.add(check{ID: id, Title: title, Status: checkSkip, Detail: reason})
}

func (d *doctor) failed() bool {
	for _, c := range d.checks {
		if c.Status == checkFail {
			return true
		}
	}
	return false
}

// bad reports whether Load refused any of the variables.
func (d *doctor) bad(names ...string) bool {
	for _, n := range names {
		if d.badVars[n] {
			return true
		}
	}
	return false
}

func (d *doctor) run(ctx context.Context) {
	d.checkConfig()
	d.checkAppURL()
	d.checkPublicHost(ctx)
	d.checkWebhookURL()
	d.checkToken(ctx)
	d.checkSigningKey()
	d.checkAccountKey(ctx)
	d.chooseSignKey()
	d.checkReachable(ctx)
	d.checkRedirect(ctx)
	d.checkDelivery(ctx)
	d.checkLargeDelivery(ctx)
	d.checkDatabase(ctx)
	d.checkNotify(ctx)
	d.checkMode()
}

// Check titles, in the order they are printed.
const (
	titleConfig     = "Configuration"
	titleHTTPS      = "APP_URL is set and https"
	titlePublic     = "APP_URL is a public address"
	titleWebhookURL = "Webhook URL"
	titleToken      = "Replicate API token"
	titleKey        = "Signing key is well formed"
	titleAccountKey = "Signing key is the account's"
	titleReachable  = "Endpoint reachable through APP_URL"
	titleRedirect   = "POST is not redirected"
	titleDelivery   = "Signed test delivery accepted"
	titleLarge      = "5 MiB delivery accepted"
	titleDatabase   = "Database reachable and migrated"
	titleNotify     = "Notification URLs accept connections"
	titleMode       = "Mode"
)

func (d *doctor) checkConfig() {
	d.cfg, d.cfgErr = config.Load(d.getenv)
	var set []string
	for _, v := range config.Vars() {
		if strings.TrimSpace(d.getenv(v.Name)) != "" {
			set = append(set, v.Name)
		}
	}
	setNote := "no variables set"
	if len(set) > 0 {
		setNote = "set: " + strings.Join(set, ", ")
	}
	if d.cfgErr == nil {
		d.pass("config", titleConfig, "the environment is a valid configuration ("+setNote+")")
		return
	}
	var problems []string
	for _, err := range unjoin(d.cfgErr) {
		var ce *config.Error
		if errors.As(err, &ce) {
			d.badVars[ce.Var] = true
		}
		problems = append(problems, err.Error())
	}
	d.fail("config", titleConfig, "serve would refuse to start:\n"+strings.Join(problems, "\n"),
		"correct each variable as it says; 'trainhook serve --help' describes them all")
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// endpointSkip says why the APP_URL checks cannot run, or "".
func (d *doctor) endpointSkip() string {
	switch {
	case d.bad(config.EnvAppURL, config.EnvNextPublicAppURL):
		return "APP_URL is invalid (see Configuration)"
	case d.cfg.Webhooks == config.WebhooksOff:
		return "TRAINHOOK_WEBHOOKS=off: trainhook polls and gives Replicate no webhook URL"
	case d.cfg.AppURL == "":
		return "APP_URL is not set"
	}
	return ""
}

func (d *doctor) appURLName() string {
	if d.cfg.AppURLSource != "" {
		return d.cfg.AppURLSource
	}
	return config.EnvAppURL
}

func (d *doctor) checkAppURL() {
	name := d.appURLName()
	switch {
	case d.bad(config.EnvAppURL, config.EnvNextPublicAppURL):
		d.skip("app_url", titleHTTPS, "APP_URL is invalid (see Configuration)")
	case d.cfg.Webhooks == config.WebhooksOff:
		d.skip("app_url", titleHTTPS, "TRAINHOOK_WEBHOOKS=off: trainhook polls and gives Replicate no webhook URL")
	case d.cfg.AppURL == "":
		// Polling mode works: a correct setup on a developer's machine.
		d.warn("app_url", titleHTTPS, "APP_URL is not set: Replicate has nowhere to send webhooks, so trainhook polls for status",
			"set APP_URL to this server's public https URL, such as https://trainhook.example.com; in development a tunnel gives you one (cloudflared tunnel --url http://localhost:8080, or ngrok http 8080)")
	case !strings.HasPrefix(d.cfg.AppURL, "https://"):
		consequence := "trainhook polls instead of receiving webhooks"
		if d.cfg.WebhookMode {
			consequence = "TRAINHOOK_WEBHOOKS=on gives Replicate this plain-http URL anyway"
		}
		report := d.fail
		if d.localAppURL() {
			report = d.warn // a local address: this machine, not production
		}
		report("app_url", titleHTTPS, fmt.Sprintf("%s is %s, not https: %s", name, d.cfg.AppURL, consequence),
			"serve trainhook over https (a reverse proxy with a certificate such as Caddy or nginx, your platform's TLS, or a tunnel) and set "+name+" to the https URL")
	default:
		d.pass("app_url", titleHTTPS, fmt.Sprintf("%s is %s", name, d.cfg.AppURL))
	}
}

func (d *doctor) checkPublicHost(ctx context.Context) {
	if reason := d.endpointSkip(); reason != "" {
		d.skip("public_host", titlePublic, reason)
		return
	}
	u, _ := url.Parse(d.cfg.AppURL)
	host := u.Hostname()
	consequence := "so trainhook is in polling mode"
	if d.cfg.WebhookMode {
		consequence = fmt.Sprintf("yet TRAINHOOK_WEBHOOKS=on forces webhook mode: Replicate's deliveries will not arrive, and each outcome is only found by reconciliation, %s after a training's last news", humanDuration(d.cfg.ReconcileAfter))
	}
	fix := "use a public host name that Replicate's servers can reach (or a tunnel); for local development polling mode is fine: leave TRAINHOOK_WEBHOOKS at auto"
	if why, local := config.LocalHost(host); local {
		what := host + " is a local address"
		if why != "" {
			what = why
		}
		d.localHost("public_host", what, consequence, fix)
		return
	}
	if _, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		d.pass("public_host", titlePublic, host+" is a public address")
		return
	}
	lctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupNetIP(lctx, "ip", host)
	if err != nil {
		d.fail("public_host", titlePublic, fmt.Sprintf("%s does not resolve from this machine (%v): Replicate cannot reach it either", host, err),
			"check the DNS record of "+host)
		return
	}
	var public, private []string
	for _, a := range addrs {
		if _, local := config.LocalHost(a.Unmap().String()); local {
			private = append(private, a.Unmap().String())
		} else {
			public = append(public, a.Unmap().String())
		}
	}
	if len(public) == 0 {
		d.localHost("public_host", fmt.Sprintf("%s resolves only to private addresses (%s)", host, strings.Join(private, ", ")), consequence, fix)
		return
	}
	d.pass("public_host", titlePublic, fmt.Sprintf("%s resolves to %s", host, strings.Join(public, ", ")))
}

func (d *doctor) checkWebhookURL() {
	if d.bad(config.EnvAppURL, config.EnvNextPublicAppURL) || d.cfg.AppURL == "" {
		reason := "APP_URL is not set"
		if d.bad(config.EnvAppURL, config.EnvNextPublicAppURL) {
			reason = "APP_URL is invalid (see Configuration)"
		}
		d.skip("webhook_url", titleWebhookURL, reason)
		return
	}
	if d.cfg.WebhookMode {
		d.pass("webhook_url", titleWebhookURL, d.cfg.WebhookURL+" (trainings trainhook starts add ?model=ID&token=...)")
		return
	}
	d.pass("webhook_url", titleWebhookURL, d.cfg.WebhookURL+" (not given to Replicate in polling mode)")
}

func (d *doctor) checkToken(ctx context.Context) {
	if d.bad(config.EnvReplicateToken, config.EnvReplicateBaseURL) {
		d.skip("replicate_token", titleToken, "REPLICATE_API_TOKEN or REPLICATE_BASE_URL is invalid (see Configuration)")
		return
	}
	if d.cfg.ReplicateToken == "" {
		d.fail("replicate_token", titleToken, "REPLICATE_API_TOKEN is not set: trainhook cannot start, cancel or poll trainings, nor fetch the signing key",
			"create a token at https://replicate.com/account/api-tokens and set REPLICATE_API_TOKEN=r8_...")
		return
	}
	client, err := replicate.NewClient(replicate.ClientOptions{
		BaseURL: d.cfg.ReplicateBaseURL, Token: d.cfg.ReplicateToken, Timeout: d.timeout, MaxRetries: -1,
		UserAgent: "trainhook-doctor/" + version,
	})
	if err != nil {
		d.fail("replicate_token", titleToken, err.Error(), "correct REPLICATE_BASE_URL")
		return
	}
	d.client = client
	cctx, cancel := context.WithTimeout(ctx, 2*d.timeout)
	defer cancel()
	acct, err := client.Account(cctx)
	base := client.BaseURL()
	switch {
	case replicate.IsUnauthorized(err):
		d.fail("replicate_token", titleToken, fmt.Sprintf("Replicate (%s) refused REPLICATE_API_TOKEN: %v", base, err),
			"the token is wrong or revoked: copy a valid one from https://replicate.com/account/api-tokens into REPLICATE_API_TOKEN")
	case err != nil:
		fix := "check this machine's network access to " + base
		if d.cfg.ReplicateBaseURL != config.DefaultReplicateBaseURL {
			fix += " (REPLICATE_BASE_URL is set: is that server running?)"
		}
		d.fail("replicate_token", titleToken, fmt.Sprintf("could not check the token with %s: %v", base, err), fix)
	default:
		d.tokenOK = true
		who := acct.Username
		if acct.Type != "" {
			who += " (" + acct.Type + ")"
		}
		d.pass("replicate_token", titleToken, fmt.Sprintf("valid for account %s at %s", who, base))
	}
}

func (d *doctor) checkSigningKey() {
	if d.bad(config.EnvWebhookSecret) {
		d.fail("signing_key", titleKey, findVarError(d.cfgErr, config.EnvWebhookSecret),
			"set REPLICATE_WEBHOOK_SECRET to the key from GET https://api.replicate.com/v1/webhooks/default/secret (whsec_ and standard base64; several keys separated by spaces or commas)")
		return
	}
	keys := d.cfg.WebhookKeys
	switch {
	case len(keys) > 0:
		what := "1 key, fingerprint "
		if len(keys) > 1 {
			what = fmt.Sprintf("%d keys, fingerprints ", len(keys))
		}
		d.pass("signing_key", titleKey, "REPLICATE_WEBHOOK_SECRET holds "+what+strings.Join(keys.Fingerprints(), ", "))
	case !d.cfg.WebhookMode:
		d.pass("signing_key", titleKey, "REPLICATE_WEBHOOK_SECRET is not set, which polling mode does not need (deliveries to the endpoint would be refused)")
	case d.tokenOK:
		d.pass("signing_key", titleKey, "REPLICATE_WEBHOOK_SECRET is not set: serve fetches the account's key with REPLICATE_API_TOKEN at start-up")
	case d.cfg.ReplicateToken != "":
		d.fail("signing_key", titleKey, "REPLICATE_WEBHOOK_SECRET is not set and REPLICATE_API_TOKEN cannot fetch the account's key (see Replicate API token): serve would refuse to start in webhook mode",
			"fix the token, or set REPLICATE_WEBHOOK_SECRET to the key from GET https://api.replicate.com/v1/webhooks/default/secret")
	default:
		d.fail("signing_key", titleKey, "webhook mode needs a signing key, and neither REPLICATE_WEBHOOK_SECRET nor REPLICATE_API_TOKEN is set",
			`set REPLICATE_WEBHOOK_SECRET to the key from curl -s -H "Authorization: Bearer $REPLICATE_API_TOKEN" https://api.replicate.com/v1/webhooks/default/secret, or set REPLICATE_API_TOKEN and serve fetches it`)
	}
}

// findVarError returns Load's message about one variable.
func findVarError(err error, name string) string {
	for _, e := range unjoin(err) {
		var ce *config.Error
		if errors.As(e, &ce) && ce.Var == name {
			return ce.Error()
		}
	}
	return name + " is invalid"
}

func (d *doctor) checkAccountKey(ctx context.Context) {
	if !d.tokenOK {
		d.skip("account_key", titleAccountKey, "needs a valid REPLICATE_API_TOKEN (see Replicate API token)")
		return
	}
	cctx, cancel := context.WithTimeout(ctx, 2*d.timeout)
	defer cancel()
	key, err := d.client.WebhookSecret(cctx)
	if err != nil {
		d.fail("account_key", titleAccountKey, "could not fetch the account's signing key: "+err.Error(),
			"check that the token may read GET /v1/webhooks/default/secret, and retry")
		return
	}
	d.accountKey = &key
	keys := d.cfg.WebhookKeys
	switch {
	case d.bad(config.EnvWebhookSecret):
		d.fail("account_key", titleAccountKey, fmt.Sprintf("REPLICATE_WEBHOOK_SECRET is invalid; the account's key has fingerprint %s", key.Fingerprint()),
			"set REPLICATE_WEBHOOK_SECRET to the key from GET /v1/webhooks/default/secret, or unset it to use the account's key")
	case len(keys) == 0:
		d.pass("account_key", titleAccountKey, fmt.Sprintf("the account's key (fingerprint %s) is fetched and used", key.Fingerprint()))
	case keys.Contains(key):
		d.pass("account_key", titleAccountKey, fmt.Sprintf("REPLICATE_WEBHOOK_SECRET includes the account's key (fingerprint %s)", key.Fingerprint()))
	default:
		d.fail("account_key", titleAccountKey,
			fmt.Sprintf("REPLICATE_WEBHOOK_SECRET (fingerprint %s) does not include this account's key (fingerprint %s): Replicate signs with the account's key, so every delivery would be refused; serve refuses to start in webhook mode",
				strings.Join(keys.Fingerprints(), ", "), key.Fingerprint()),
			"set REPLICATE_WEBHOOK_SECRET to the key from GET https://api.replicate.com/v1/webhooks/default/secret, or unset it to use the account's key")
	}
}

// chooseSignKey picks the key the test deliveries are signed with: the
// account's, as Replicate would, else the first configured one.
func (d *doctor) chooseSignKey() {
	switch {
	case d.accountKey != nil:
		d.signKey = d.accountKey
	case len(d.cfg.WebhookKeys) > 0:
		k := d.cfg.WebhookKeys[0]
		d.signKey = &k
	}
}

func (d *doctor) checkReachable(ctx context.Context) {
	if reason := d.endpointSkip(); reason != "" {
		d.skip("reachable", titleReachable, reason)
		return
	}
	target := d.cfg.WebhookURL
	rctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(rctx, http.MethodGet, target, nil)
	req.Header.Set("User-Agent", "trainhook-doctor/"+version)
	start := time.Now()
	resp, err := d.hc.Do(req)
	if err != nil {
		detail, fix := explainDialError(target, err, d.timeout)
		d.fail("reachable", titleReachable, detail, fix)
		return
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	resp.Body.Close()
	d.reached = true
	took := humanDuration(time.Since(start))
	note := " (from this machine; a firewall may still keep Replicate out)"
	switch {
	case resp.StatusCode == http.StatusMethodNotAllowed && strings.Contains(string(body), "webhook deliveries"):
		d.pass("reachable", titleReachable, fmt.Sprintf("trainhook's webhook endpoint answered in %s%s", took, note))
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		d.pass("reachable", titleReachable, fmt.Sprintf("%s answered %d, a redirect to %s, in %s%s", target, resp.StatusCode, orDash(resp.Header.Get("Location")), took, note))
	default:
		d.pass("reachable", titleReachable, fmt.Sprintf("%s answered %d (%s) in %s, which is not how trainhook's endpoint answers a GET; see the checks below%s",
			target, resp.StatusCode, orDash(resp.Header.Get("Content-Type")), took, note))
	}
}

// explainDialError says why a request got no answer and what to do.
func explainDialError(target string, err error, timeout time.Duration) (detail, fix string) {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	u, _ := url.Parse(target)
	host := u.Host
	detail = fmt.Sprintf("cannot reach %s from this machine: %v", target, err)
	var dnsErr *net.DNSError
	var certErr *tls.CertificateVerificationError
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		fix = "nothing listens at " + host + ": is trainhook serve running, and does APP_URL point at it (or at the proxy in front of it)?"
	case errors.As(err, &dnsErr):
		fix = u.Hostname() + " does not resolve: check APP_URL's host name and its DNS record"
	case errors.As(err, &certErr), errors.As(err, &unknownCA), errors.As(err, &hostErr):
		fix = "the TLS certificate of " + u.Hostname() + " is not valid, and Replicate refuses it too: install a certificate for this name that public CAs vouch for (Let's Encrypt, your platform's TLS)"
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		detail = fmt.Sprintf("no answer from %s within %s", target, timeout)
		fix = "a firewall may drop the connection, or the server is overloaded: check that " + host + " accepts connections from the internet"
	default:
		fix = "check that APP_URL is this server's public address and that it accepts connections"
	}
	return detail, fix
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// probe sends one signed test delivery: a training whose id starts with
// webhook.ProbePrefix, which trainhook verifies and answers without storing.
func (d *doctor) probe(ctx context.Context, key replicate.Key, padTo int64, timeout time.Duration) (delivery, error) {
	body, err := fakereplicate.TrainingPayload(fakereplicate.PayloadOptions{
		TrainingID: webhook.ProbePrefix + randomID(12), Status: "processing",
		Webhook: d.cfg.WebhookURL, PadTo: padTo, Now: time.Now(),
	})
	if err != nil {
		return delivery{}, err
	}
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	res, err := sendDelivery(pctx, d.hc, d.cfg.WebhookURL, key, "msg_"+webhook.ProbePrefix+randomID(12), time.Now(), body)
	if err == nil {
		res.size = len(body)
	}
	return res, err
}

func (d *doctor) checkRedirect(ctx context.Context) {
	if reason := d.endpointSkip(); reason != "" {
		d.skip("redirect", titleRedirect, reason)
		return
	}
	if !d.reached {
		d.skip("redirect", titleRedirect, "the endpoint is not reachable")
		return
	}
	// The small signed delivery is also the redirect check. Without a key
	// it is signed with a random one: the answer is then a 401, which is
	// still enough to see whether a redirect comes first.
	key := randomKey()
	if d.signKey != nil {
		key = *d.signKey
	}
	res, err := d.probe(ctx, key, 0, d.timeout)
	if err != nil {
		detail, fix := explainDialError(d.cfg.WebhookURL, err, d.timeout)
		d.fail("redirect", titleRedirect, "POST: "+detail, fix)
		return
	}
	d.small = &res
	if res.code >= 300 && res.code < 400 {
		d.redirected = true
		loc := res.location
		detail := fmt.Sprintf("POST %s is answered %d, a redirect to %s: Replicate does not follow redirects, so every delivery would be lost",
			d.cfg.WebhookURL, res.code, orDash(loc))
		d.fail("redirect", titleRedirect, detail, redirectFix(d.cfg.WebhookURL, loc, d.appURLName()))
		return
	}
	d.pass("redirect", titleRedirect, fmt.Sprintf("POST %s is answered %d directly", d.cfg.WebhookURL, res.code))
}

// redirectFix suggests the APP_URL that makes the redirect unnecessary.
func redirectFix(from, location, name string) string {
	base, _ := url.Parse(from)
	to, err := base.Parse(location)
	if location != "" && err == nil {
		path := strings.TrimRight(to.Path, "/")
		if prefix, ok := strings.CutSuffix(path, config.WebhookPath); ok {
			return fmt.Sprintf("set %s to %s://%s%s, the address the redirect points to (so that it is the final URL)", name, to.Scheme, to.Host, prefix)
		}
	}
	return "make " + from + " reach trainhook without a redirect (a proxy rule, an http-to-https or trailing-slash redirect are the usual causes), or set " + name + " to the final address"
}

func (d *doctor) checkDelivery(ctx context.Context) {
	switch reason := d.endpointSkip(); {
	case reason != "":
		d.skip("delivery", titleDelivery, reason)
		return
	case !d.reached:
		d.skip("delivery", titleDelivery, "the endpoint is not reachable")
		return
	case d.small == nil:
		d.skip("delivery", titleDelivery, "the test POST got no answer (see above)")
		return
	case d.redirected:
		d.skip("delivery", titleDelivery, "POST is redirected (see above)")
		return
	case d.signKey == nil:
		d.skip("delivery", titleDelivery, "no signing key to sign it with (see Signing key is well formed)")
		return
	}
	res := *d.small
	fp := d.signKey.Fingerprint()
	switch {
	case res.code == http.StatusOK && res.outcome() == "probe":
		d.accepted = true
		d.pass("delivery", titleDelivery, fmt.Sprintf("trainhook verified the signature (key %s) and answered {\"outcome\":\"probe\"} in %s; nothing was stored", fp, humanDuration(res.elapsed)))
	case res.code == http.StatusUnauthorized && strings.Contains(res.errorText(), replicate.ErrNoKey.Error()):
		d.fail("delivery", titleDelivery, "the server refused it (401): "+res.errorText()+": it has no signing key, so it refuses every delivery",
			"set REPLICATE_WEBHOOK_SECRET on the server (or REPLICATE_API_TOKEN, to use the account's key) and restart it")
	case res.code == http.StatusUnauthorized && (strings.Contains(res.errorText(), "old") || strings.Contains(res.errorText(), "future")):
		d.fail("delivery", titleDelivery, "the server refused it (401): "+res.errorText(),
			"the server's clock and this machine's differ by more than 5 minutes: synchronise them (NTP)")
	case res.code == http.StatusUnauthorized:
		d.fail("delivery", titleDelivery, fmt.Sprintf("the server refused the signature (401: %s): it has another signing key than this environment's (fingerprint %s)%s", res.errorText(), fp, d.serverKeys(ctx)),
			"give serve the same REPLICATE_WEBHOOK_SECRET as here, the key from GET https://api.replicate.com/v1/webhooks/default/secret (or unset it on both and set REPLICATE_API_TOKEN), then restart it")
	case res.code >= 200 && res.code < 300:
		d.fail("delivery", titleDelivery, fmt.Sprintf("something answered %d, but not trainhook (%s): a login page, a proxy or another app stands in front of the endpoint", res.code, res.errorText()),
			"let POSTs to "+config.WebhookPath+" through to trainhook with no login or challenge in front: deliveries are authenticated by their signature")
	case res.code == http.StatusNotFound:
		d.fail("delivery", titleDelivery, fmt.Sprintf("no webhook endpoint at %s (404: %s)", d.cfg.WebhookURL, res.errorText()),
			"check APP_URL's path: trainhook serves "+config.WebhookPath+" under it, and a proxy must pass it through")
	case res.code == http.StatusForbidden || res.code == http.StatusProxyAuthRequired:
		d.fail("delivery", titleDelivery, fmt.Sprintf("refused with %d (%s): something in front of trainhook blocks it", res.code, res.errorText()),
			"let POSTs to "+config.WebhookPath+" through without authentication, IP allow-list or bot challenge: deliveries are authenticated by their signature")
	case res.code == http.StatusMisdirectedRequest && strings.Contains(res.errorText(), "TRAINHOOK_ALLOWED_HOSTS"):
		d.fail("delivery", titleDelivery, fmt.Sprintf("trainhook refused the host name it was reached by (421: %s)", res.errorText()),
			"give serve the same APP_URL as here, or add the name in that message to the server's TRAINHOOK_ALLOWED_HOSTS (a proxy that sends its upstream's name as Host needs it)")
	case res.code == http.StatusRequestEntityTooLarge:
		d.fail("delivery", titleDelivery, fmt.Sprintf("even a %s delivery is refused as too large (413: %s)", byteSize(int64(res.size)), res.errorText()),
			"raise the body limit (TRAINHOOK_MAX_BODY on the server, or the proxy's) to 10 MiB or more")
	case res.code >= 500:
		d.fail("delivery", titleDelivery, fmt.Sprintf("the server failed (%d: %s)", res.code, res.errorText()),
			"see the server's log; a 502 or 504 from a proxy means it cannot reach trainhook")
	default:
		d.fail("delivery", titleDelivery, fmt.Sprintf("refused with %d: %s", res.code, res.errorText()),
			"see the server's log for this delivery")
	}
}

// serverKeys asks the server which key fingerprints it accepts, through
// APP_URL with TRAINHOOK_API_TOKEN; "" when it cannot tell.
func (d *doctor) serverKeys(ctx context.Context) string {
	c, err := apiclient.New(d.cfg.AppURL, d.cfg.APIToken)
	if err != nil {
		return ""
	}
	c.Timeout = d.timeout
	st, err := c.Status(ctx)
	if err != nil {
		return ""
	}
	if len(st.SigningKeys) == 0 {
		return "; the server has no signing key"
	}
	return "; the server accepts fingerprint(s) " + strings.Join(st.SigningKeys, ", ")
}

func (d *doctor) checkLargeDelivery(ctx context.Context) {
	if reason := d.endpointSkip(); reason != "" {
		d.skip("large_delivery", titleLarge, reason)
		return
	}
	switch {
	case !d.reached:
		d.skip("large_delivery", titleLarge, "the endpoint is not reachable")
		return
	case d.small == nil:
		d.skip("large_delivery", titleLarge, "the test POST got no answer (see above)")
		return
	case d.redirected:
		d.skip("large_delivery", titleLarge, "POST is redirected (see above)")
		return
	case !d.accepted:
		d.skip("large_delivery", titleLarge, "the signed test delivery was not accepted")
		return
	}
	res, err := d.probe(ctx, *d.signKey, largeProbe, 3*d.timeout)
	proxyFix := "raise the limit of the proxy in front of trainhook to 10 MB or more (nginx: client_max_body_size 20m; Caddy: request_body max_size 20MB): Replicate's training webhooks carry the whole log"
	switch {
	case err != nil:
		detail, _ := explainDialError(d.cfg.WebhookURL, err, 3*d.timeout)
		d.fail("large_delivery", titleLarge, "sending 5 MiB failed: "+detail+" (a body limit that cuts the connection?)", proxyFix)
	case res.code == http.StatusOK && res.outcome() == "probe":
		d.pass("large_delivery", titleLarge, fmt.Sprintf("a %s delivery was accepted in %s", byteSize(int64(res.size)), humanDuration(res.elapsed)))
	case res.code == http.StatusRequestEntityTooLarge && strings.Contains(res.errorText(), "TRAINHOOK_MAX_BODY"):
		d.fail("large_delivery", titleLarge, "trainhook refused it as too large (413): "+res.errorText(),
			"set TRAINHOOK_MAX_BODY on the server to 10MiB (the default) or more, and restart it")
	case res.code == http.StatusRequestEntityTooLarge:
		d.fail("large_delivery", titleLarge, fmt.Sprintf("something in front of trainhook refused it as too large (413: %s): Replicate's final delivery, which carries the whole log, would be refused and the outcome found only by polling", res.errorText()), proxyFix)
	default:
		d.fail("large_delivery", titleLarge, fmt.Sprintf("refused with %d: %s", res.code, res.errorText()), proxyFix)
	}
}

func (d *doctor) checkDatabase(ctx context.Context) {
	switch {
	case d.bad(config.EnvDatabaseURL):
		d.skip("database", titleDatabase, "DATABASE_URL is invalid (see Configuration)")
		return
	case d.cfg.DBDriver == config.DriverPostgres:
		d.checkPostgres(ctx)
		return
	}
	path := d.cfg.DBPath
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = path
	}
	cctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	applied, latest, err := sqlite.Check(cctx, path)
	switch {
	case errors.Is(err, sqlite.ErrNoDatabase):
		d.fail("database", titleDatabase, fmt.Sprintf("there is no database at %s (doctor opens it read-only and never creates it)", abs),
			"serve creates it on its first start; if serve is running, set DATABASE_URL here to the file it uses")
	case err != nil:
		d.fail("database", titleDatabase, err.Error(), "check DATABASE_URL, the file and its directory's permissions")
	case applied == 0:
		d.fail("database", titleDatabase, fmt.Sprintf("%s has no trainhook schema", abs),
			"is DATABASE_URL the right file? serve migrates a new, empty file at start-up")
	case applied < latest:
		d.fail("database", titleDatabase, fmt.Sprintf("%s is at schema version %d; this trainhook expects %d", abs, applied, latest),
			"start trainhook serve (this version): it migrates the file at start-up")
	case applied > latest:
		d.fail("database", titleDatabase, fmt.Sprintf("%s is at schema version %d, newer than this trainhook knows (%d)", abs, applied, latest),
			"run the newer trainhook release that migrated it, or restore a backup")
	default:
		d.pass("database", titleDatabase, fmt.Sprintf("%s: SQLite, schema version %d (up to date)", abs, applied))
	}
}

// checkPostgres connects without migrating or changing anything.
func (d *doctor) checkPostgres(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	where := config.RedactDatabaseURL(d.cfg.DatabaseURL)
	applied, latest, err := postgres.Check(cctx, d.cfg.DatabaseURL)
	switch {
	case err != nil:
		d.fail("database", titleDatabase, err.Error(), "check DATABASE_URL (host, port, user, password, database) and that PostgreSQL accepts connections from this machine")
	case applied == 0:
		d.fail("database", titleDatabase, fmt.Sprintf("%s has no trainhook schema", where),
			"is DATABASE_URL the right database? serve migrates an empty database at start-up")
	case applied < latest:
		d.fail("database", titleDatabase, fmt.Sprintf("%s is at schema version %d; this trainhook expects %d", where, applied, latest),
			"start trainhook serve (this version): it migrates the database at start-up")
	case applied > latest:
		d.fail("database", titleDatabase, fmt.Sprintf("%s is at schema version %d, newer than this trainhook knows (%d)", where, applied, latest),
			"run the newer trainhook release that migrated it")
	default:
		d.pass("database", titleDatabase, fmt.Sprintf("%s: PostgreSQL, schema version %d (up to date)", where, applied))
	}
}

// checkNotify connects to each TRAINHOOK_NOTIFY_URL, as serve does at start;
// it sends nothing, so the app sees no event it did not cause.
func (d *doctor) checkNotify(ctx context.Context) {
	switch {
	case d.bad(config.EnvNotifyURL, config.EnvNotifySecret, config.EnvNotifyEvents, config.EnvNotifyAllowedOrigins, config.EnvNotifyRetryFor):
		d.skip("notify", titleNotify, "the notification settings are invalid (see Configuration)")
		return
	case len(d.cfg.Notify.URLs) == 0:
		d.skip("notify", titleNotify, "TRAINHOOK_NOTIFY_URL is not set: your app is not told when a model changes (see docs/notifications.md)")
		return
	}
	bad := notify.Probe(ctx, d.cfg.Notify.URLs, d.timeout)
	if len(bad) == 0 {
		d.pass("notify", titleNotify, fmt.Sprintf("connected to %s; events %s, signed with the key of fingerprint %s",
			strings.Join(d.cfg.Notify.URLs, ", "), strings.Join(d.cfg.Notify.Events, ","), strings.Join(d.cfg.Notify.Keys.Fingerprints(), ", ")))
		return
	}
	var lines []string
	for _, u := range d.cfg.Notify.URLs {
		if err, ok := bad[u]; ok {
			lines = append(lines, u+": "+err.Error())
		}
	}
	d.warn("notify", titleNotify, strings.Join(lines, "\n"),
		fmt.Sprintf("start your app or correct TRAINHOOK_NOTIFY_URL; until a URL accepts them its notifications wait, retried for %s (TRAINHOOK_NOTIFY_RETRY_FOR), then fail ('trainhook notifications resend ID' sends one again)",
			humanDuration(d.cfg.Notify.RetryFor)))
}

func (d *doctor) checkMode() {
	if d.cfg.ModeReason == "" {
		d.skip("mode", titleMode, "the mode cannot be decided from APP_URL and TRAINHOOK_WEBHOOKS (see Configuration)")
		return
	}
	mode := "polling mode"
	if d.cfg.WebhookMode {
		mode = "webhook mode"
	}
	d.pass("mode", titleMode, mode+": "+d.cfg.ModeReason)
}

// doctorReport is the --json output.
type doctorReport struct {
	OK       bool    `json:"ok"`
	Passed   int     `json:"passed"`
	Warnings int     `json:"warnings"`
	Failed   int     `json:"failed"`
	Skipped  int     `json:"skipped"`
	Checks   []check `json:"checks"`
}

func (d *doctor) report() doctorReport {
	r := doctorReport{Checks: d.checks}
	for _, c := range d.checks {
		switch c.Status {
		case checkPass:
			r.Passed++
		case checkWarn:
			r.Warnings++
		case checkFail:
			r.Failed++
		default:
			r.Skipped++
		}
	}
	r.OK = r.Failed == 0
	return r
}

func (d *doctor) print(w io.Writer) {
	fmt.Fprintln(w, "trainhook doctor: the configuration in this environment")
	fmt.Fprintln(w)
	for _, c := range d.checks {
		mark := map[string]string{checkPass: "✔", checkWarn: "⚠", checkFail: "✘", checkSkip: "–"}[c.Status]
		detail := c.Detail
		if c.Status == checkSkip {
			detail = "skipped: " + detail
		}
		lines := strings.Split(detail, "\n")
		fmt.Fprintf(w, "%s %s: %s\n", mark, c.Title, lines[0])
		for _, l := range lines[1:] {
			fmt.Fprintf(w, "    %s\n", l)
		}
		if c.Fix != "" {
			fmt.Fprintf(w, "    fix: %s\n", c.Fix)
		}
	}
	r := d.report()
	plural := "s"
	if r.Warnings == 1 {
		plural = ""
	}
	fmt.Fprintf(w, "\n%d passed, %d warning%s, %d failed, %d skipped\n", r.Passed, r.Warnings, plural, r.Failed, r.Skipped)
}

// localAppURL reports whether APP_URL names this machine or a private
// network: a developer's setup, not production.
func (d *doctor) localAppURL() bool {
	u, err := url.Parse(d.cfg.AppURL)
	if err != nil {
		return false
	}
	_, local := config.LocalHost(u.Hostname())
	return local
}

// localReplicate reports whether REPLICATE_BASE_URL names this machine or a
// private network (the simulator of trainhook demo): it can reach a local
// APP_URL.
func (d *doctor) localReplicate() bool {
	u, err := url.Parse(d.cfg.ReplicateBaseURL)
	if err != nil || d.cfg.ReplicateBaseURL == "" {
		return false
	}
	_, local := config.LocalHost(u.Hostname())
	return local
}

// localHost reports an APP_URL Replicate's servers cannot reach. A
// Replicate on this machine too (the simulator) reaches it; in polling mode
// nothing needs to, which is a correct local setup (a warning); only
// webhook mode forced on against the real Replicate is a failure.
func (d *doctor) localHost(id, what, consequence, fix string) {
	switch {
	case d.localReplicate():
		d.pass(id, titlePublic, fmt.Sprintf("%s, and so is Replicate's API at %s, which can reach it", what, config.RedactURL(d.cfg.ReplicateBaseURL)))
	case !d.cfg.WebhookMode:
		d.warn(id, titlePublic, fmt.Sprintf("%s: Replicate cannot reach it, %s", what, consequence), fix)
	default:
		d.fail(id, titlePublic, fmt.Sprintf("%s: Replicate cannot reach it, %s", what, consequence), fix)
	}
}
