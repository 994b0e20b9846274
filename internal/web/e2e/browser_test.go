// Package e2e drives the dashboard in a real browser (Debian's chromium,
// through chromedp) against a whole trainhook started in-process, with the
// Replicate simulator delivering real signed webhooks to it. Screenshots of
// every page go to the directory TRAINHOOK_SCREENSHOTS names (a temporary
// one, removed after the test, when it is unset).
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/trainhook/trainhook/internal/app"
	"github.com/trainhook/trainhook/internal/apptest"
	"github.com/trainhook/trainhook/internal/fakereplicate"
	"github.com/trainhook/trainhook/internal/replicate"
)

const (
	chromium  = "/usr/bin/chromium"
	simToken  = "r8_browser_test"
	dashToken = "browser-test-dashboard-token-0042"
	// trainingRun is how long a simulated training takes, start to end.
	trainingRun = 10 * time.Second
)

// requireChromium fails under CI (CI is set) and skips elsewhere when the
// browser is missing: CI must run this test, a laptop may not have chromium.
func requireChromium(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(chromium); err == nil {
		return
	}
	msg := chromium + " is missing: install it with .ci/install-chromium.sh (Debian's chromium package) to run the browser tests"
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// stack is the simulator and a trainhook in webhook mode pointed at it.
type stack struct {
	sim *fakereplicate.Server
	app *app.App
	url string
}

func startStack(t *testing.T) *stack {
	t.Helper()
	sim, simURL := apptest.Sim(t, fakereplicate.Options{Token: simToken, Duration: trainingRun, Seed: 7})
	// The webhook URL names the server's own address: it listens first.
	ln := apptest.Listen(t)
	log := slog.New(slog.DiscardHandler)
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	srv := apptest.Start(t, apptest.Options{Listener: ln, Log: log, Env: map[string]string{
		"DATABASE_URL":             filepath.Join(t.TempDir(), "trainhook.db"),
		"APP_URL":                  apptest.URL(ln),
		"TRAINHOOK_WEBHOOKS":       "on",
		"TRAINHOOK_WEBHOOK_EVENTS": "start,logs,completed",
		"REPLICATE_BASE_URL":       simURL,
		"REPLICATE_API_TOKEN":      simToken,
		"TRAINHOOK_API_RATE_LIMIT": "3000",
		"TRAINHOOK_API_TOKEN":      dashToken,
		// The simulator signs with its own random key; the server fetches
		// it from the account, as it does with no key configured.
		"REPLICATE_WEBHOOK_SECRET": "",
	}})
	return &stack{sim: sim, app: srv.App, url: srv.URL}
}

// browser is one headless chromium with a fresh profile.
type browser struct {
	t       *testing.T
	ctx     context.Context
	shots   string
	mu      sync.Mutex
	console []chromedp.ConsoleMessage
}

func startBrowser(t *testing.T) *browser {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelCtx(); cancelAlloc() })
	// The first action starts the browser; it must not run under a timeout.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	b := &browser{t: t, ctx: ctx, shots: screenshotDir(t, os.Getenv)}
	if err := os.MkdirAll(b.shots, 0o755); err != nil {
		t.Fatal(err)
	}
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			b.mu.Lock()
			b.console = append(b.console, m)
			b.mu.Unlock()
		}
	}()
	return b
}

// do runs steps, each batch bounded by 40 s.
func (b *browser) do(steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 40*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.t.Fatalf("browser: %v (at %s)", err, b.location())
	}
}

// press clicks the element with the given id from inside the page. On a
// model's page a live update replaces the region's nodes; a click sent from
// outside after looking the node up can find it gone.
func (b *browser) press(id string) {
	b.t.Helper()
	js := fmt.Sprintf(`(function () { var e = document.getElementById(%q); if (!e) return 'missing'; e.click(); return 'ok'; })()`, id)
	if got := b.eval(js); got != "ok" {
		b.t.Fatalf("no #%s to press (at %s)", id, b.location())
	}
}

func (b *browser) location() string {
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	loc, _ := chromedp.Run(ctx, chromedp.Location())
	return loc
}

func (b *browser) eval(js string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[string](js))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

// waitFor polls a JavaScript condition until it holds. A navigation or a
// reload ends the poll with an error, so a wait that succeeds also shows the
// page was not reloaded meanwhile.
func (b *browser) waitFor(what, cond string, timeout time.Duration) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, timeout+5*time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](cond, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(timeout)))
	if err != nil {
		b.screenshot("failed-" + strings.ReplaceAll(what, " ", "-"))
		b.t.Fatalf("waiting for %s (%s): %v", what, cond, err)
	}
}

// screenshot saves the whole page as NAME.png in the screenshot directory.
func (b *browser) screenshot(name string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Errorf("screenshot %s: %v", name, err)
		return
	}
	if err := os.WriteFile(filepath.Join(b.shots, name+".png"), png, 0o644); err != nil {
		b.t.Error(err)
	}
}

// EnvScreenshots names a directory to keep the screenshots in.
const EnvScreenshots = "TRAINHOOK_SCREENSHOTS"

// screenshotDir is where the screenshots go: the directory EnvScreenshots
// names, or else the test's temporary directory, so that go test writes
// nothing into the source tree.
func screenshotDir(t *testing.T, getenv func(string) string) string {
	if dir := getenv(EnvScreenshots); dir != "" {
		return dir
	}
	return filepath.Join(t.TempDir(), "screenshots")
}

func (b *browser) messages() []chromedp.ConsoleMessage {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]chromedp.ConsoleMessage(nil), b.console...)
}

func TestDashboardInABrowser(t *testing.T) {
	requireChromium(t)
	s := startStack(t)
	b := startBrowser(t)
	css := func(s string) chromedp.CSS { return chromedp.CSS(s) }

	t.Run("sign in", func(t *testing.T) {
		b.do(chromedp.Navigate(s.url + "/deliveries"))
		if loc := b.location(); !strings.HasPrefix(loc, s.url+"/login?next=") {
			t.Fatalf("not sent to sign in: %s", loc)
		}
		b.do(chromedp.SendKeys(css("#token"), "wrong"), chromedp.Submit(css("#token")), chromedp.WaitVisible(css("#login-error")))
		b.screenshot("01-login-wrong-token")
		// Wait for the page signing in leads to, not for any h1: the sign-in
		// page has one too, and leaving while the redirect still loads
		// would abort it.
		b.do(chromedp.SendKeys(css("#token"), dashToken), chromedp.Submit(css("#token")), chromedp.WaitVisible(css(`body[data-page="deliveries"] h1`)))
		if loc := b.location(); loc != s.url+"/deliveries" {
			t.Fatalf("after sign-in: %s", loc)
		}
	})

	var readyID string
	t.Run("start from the form; the list turns Ready live", func(t *testing.T) {
		b.do(chromedp.Navigate(s.url+"/models/new"),
			chromedp.SendKeys(css("#trainer"), fakereplicate.FluxTrainer),
			chromedp.SendKeys(css("#destination"), "trainhook-sim/portrait-lora"),
			chromedp.SendKeys(css("#name"), "Portrait LoRA v1"),
			chromedp.SetValue(css("#input"), "{\n  \"steps\": 1000,\n}"),
			chromedp.Click(css("button.primary")),
			chromedp.WaitVisible(css("#input-error")))
		b.screenshot("02-start-form-invalid-json")
		b.do(chromedp.SetValue(css("#input"), `{"input_images": "https://example.com/photos.zip", "steps": 1000}`),
			chromedp.Click(css("button.primary")),
			chromedp.WaitVisible(css(".status-line")))
		readyID = b.eval(`document.body.dataset.modelId`)
		if readyID == "" {
			t.Fatal("not on the model page after starting")
		}
		b.do(chromedp.Navigate(s.url + "/"))
		b.waitFor("the row to show training progress", fmt.Sprintf(`document.querySelector('tr[data-model-id=%q][data-status="Training"] .progress-text')?.textContent.includes('%%')`, readyID), 15*time.Second)
		b.screenshot("03-models-training")
		b.waitFor("the row to turn Ready", fmt.Sprintf(`document.querySelector('tr[data-model-id=%q][data-status="Ready"]')`, readyID), 20*time.Second)
		b.waitFor("the counts to follow", `/Ready\s*1/.test(document.querySelector('nav[data-counts]').textContent)`, 5*time.Second)
		b.screenshot("04-models-ready")
	})

	t.Run("the model page shows the output", func(t *testing.T) {
		b.do(chromedp.Navigate(s.url+"/models/"+readyID), chromedp.WaitVisible(css("#h-output")))
		out := b.eval(`document.querySelector('#h-output').parentElement.textContent`)
		if !strings.Contains(out, "trainhook-sim/portrait-lora:") || !strings.Contains(out, "Weights") {
			t.Fatalf("output section: %q", out)
		}
		href := b.eval(`document.querySelector('#h-output ~ dl a')?.getAttribute('href') || ''`)
		if !strings.HasPrefix(href, "http") {
			t.Fatalf("weights link %q", href)
		}
		timeline := b.eval(`document.querySelector('.timeline').textContent`)
		for _, want := range []string{"API", "webhook", "Ready"} {
			if !strings.Contains(timeline, want) {
				t.Errorf("timeline lacks %q: %s", want, timeline)
			}
		}
		b.screenshot("05-model-ready")
	})

	var failedID string
	t.Run("a failure shows its error live on the model page", func(t *testing.T) {
		b.do(chromedp.Navigate(s.url+"/models/new"),
			chromedp.SendKeys(css("#trainer"), fakereplicate.FluxTrainer),
			chromedp.SendKeys(css("#destination"), "trainhook-sim/portrait-lora"),
			chromedp.SendKeys(css("#name"), "Portrait LoRA v2 (will fail)"),
			chromedp.SetValue(css("#input"), `{"steps": 4000}`),
			chromedp.Click(css("button.primary")),
			chromedp.WaitVisible(css(".status-line")))
		b.waitFor("the training to run", `document.querySelector('.status-line').dataset.status === 'Training'`, 15*time.Second)
		b.waitFor("live updates to be on", `document.getElementById('live-status').dataset.state === 'on'`, 5*time.Second)
		ts := s.sim.Trainings()
		id := ts[len(ts)-1].ID
		began := time.Now()
		if err := s.sim.Complete(id, "failed", "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.15 GiB total capacity)"); err != nil {
			t.Fatal(err)
		}
		b.waitFor("the page to show Failed", `document.querySelector('.status-line').dataset.status === 'Failed' && !!document.querySelector('pre.error')`, 10*time.Second)
		lag := time.Since(began)
		t.Logf("failure shown %v after Replicate's webhook went out", lag.Round(time.Millisecond))
		if lag > 2*time.Second {
			t.Errorf("the page took %v to show the failure", lag)
		}
		if msg := b.eval(`document.querySelector('pre.error').textContent`); !strings.Contains(msg, "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.15 GiB total capacity)") {
			t.Fatalf("error shown: %q", msg)
		}
		b.screenshot("06-model-failed")
		failedID = b.eval(`document.body.dataset.modelId`)
	})

	t.Run("a forged delivery is refused; a stored one replays", func(t *testing.T) {
		forger, _ := replicate.ParseKey("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD")
		body, _ := json.Marshal(map[string]any{"id": "forged-training", "status": "succeeded", "output": map[string]string{"weights": "https://evil.example/w.tar"}})
		h := http.Header{"Content-Type": {"application/json"}}
		forger.SignRequest(h, "msg_forged_by_test", time.Now(), body)
		req, _ := http.NewRequest("POST", s.url+"/api/webhooks/replicate/completed", bytes.NewReader(body))
		req.Header = h
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 401 {
			t.Fatalf("forged delivery answered %d", resp.StatusCode)
		}
		// A refused delivery is recorded without making the sender wait, and
		// the deliveries page is not live: load it until it is there.
		for deadline := time.Now().Add(10 * time.Second); ; {
			b.do(chromedp.Navigate(s.url + "/deliveries?verified=false"))
			if b.eval(`String(document.body.textContent.includes('msg_forged_by_test') && document.body.textContent.includes('no valid signature'))`) == "true" {
				break
			}
			if time.Now().After(deadline) {
				b.screenshot("failed-forged-delivery")
				t.Fatal("the forged delivery is not on the deliveries page")
			}
			time.Sleep(200 * time.Millisecond)
		}
		b.screenshot("07-deliveries-refused")
		b.do(chromedp.Navigate(s.url+"/deliveries"), chromedp.WaitVisible(css("table.deliveries")))
		b.screenshot("08-deliveries")

		// Replay the first verified delivery: it was applied, so it is a duplicate now.
		id := b.eval(`[...document.querySelectorAll('tr[data-delivery-id]')].find(r => r.textContent.includes('Verified') && r.querySelector('.outcome').textContent === 'applied').dataset.deliveryId`)
		b.do(chromedp.Navigate(s.url+"/deliveries/"+id), chromedp.Click(css("button.primary")), chromedp.WaitVisible(css("#replay-result")))
		res := b.eval(`document.getElementById('replay-result').textContent`)
		if !strings.Contains(res, "HTTP 200") || !strings.Contains(res, "duplicate") {
			t.Fatalf("replay result: %q", res)
		}
		b.screenshot("09-delivery-replayed")
		b.do(chromedp.Navigate(s.url+"/deliveries"), chromedp.WaitVisible(css("table.deliveries")))
		if got := b.eval(`document.querySelector('tr[data-delivery-id]').textContent`); !strings.Contains(got, "replay of #"+id) {
			t.Fatalf("the newest delivery is not the replay: %q", got)
		}
	})

	t.Run("a failed model is retried and removed from its page", func(t *testing.T) {
		// After the replay: the retried training's webhooks would be the
		// newest deliveries.
		b.do(chromedp.Navigate(s.url+"/models/"+failedID), chromedp.WaitVisible(css("#retry-button")))
		if b.eval(`document.querySelector('.status-line').dataset.status`) != "Failed" {
			t.Fatal("not on the failed model's page")
		}
		b.press("retry-button")
		b.do(chromedp.WaitVisible(css("#retry-of")))
		if got := b.eval(`document.getElementById('retry-of').textContent`); got != failedID {
			t.Fatalf("the new model is a retry of %q, want %q", got, failedID)
		}
		if newID := b.eval(`document.body.dataset.modelId`); newID == failedID || newID == "" {
			t.Fatalf("not on a new model's page after retrying: %q", newID)
		}
		b.screenshot("06b-model-retried")

		b.do(chromedp.Navigate(s.url + "/"))
		b.waitFor("the failed row to say why", fmt.Sprintf(`document.querySelector('tr[data-model-id=%q] .error-text')?.textContent.includes('CUDA out of memory')`, failedID), 5*time.Second)
		b.screenshot("06c-models-failed-error")

		// Removed elsewhere (the API), the row leaves the open list live.
		b.waitFor("live updates to be on", `document.getElementById('live-status').dataset.state === 'on'`, 5*time.Second)
		req, _ := http.NewRequest("DELETE", s.url+"/api/models/"+readyID, nil)
		req.Header.Set("Authorization", "Bearer "+dashToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("DELETE the Ready model: %d", resp.StatusCode)
		}
		b.waitFor("the removed row to leave the list", fmt.Sprintf(`!document.querySelector('tr[data-model-id=%q]')`, readyID), 5*time.Second)

		b.do(chromedp.Navigate(s.url+"/models/"+failedID), chromedp.WaitVisible(css("#remove-button")))
		b.eval(`(window.confirm = () => true, 'ok')`)
		b.press("remove-button")
		b.do(chromedp.WaitVisible(css("#removed")))
		b.screenshot("06d-model-removed")
		b.do(chromedp.Navigate(s.url+"/"), chromedp.WaitVisible(css("table.models")))
		if b.eval(fmt.Sprintf(`document.querySelector('tr[data-model-id=%q]') ? 'listed' : 'gone'`, failedID)) != "gone" {
			t.Fatal("the removed model is still in the list")
		}
	})

	t.Run("configuration banner", func(t *testing.T) {
		b.do(chromedp.Navigate(s.url+"/"), chromedp.Click(css(".config summary")), chromedp.WaitVisible(css(".config dl")))
		text := b.eval(`document.querySelector('.config').textContent`)
		for _, want := range []string{"Webhook mode", "TRAINHOOK_WEBHOOKS=on", s.url + "/api/webhooks/replicate/completed", s.sim.Key().Fingerprint(), "at most 3000 per minute"} {
			if !strings.Contains(text, want) {
				t.Errorf("banner lacks %q", want)
			}
		}
		if strings.Contains(text, s.sim.Key().Secret()) || strings.Contains(text, dashToken) || strings.Contains(text, simToken) {
			t.Error("the banner shows a secret")
		}
		b.screenshot("00-configuration")
	})

	t.Run("keyboard", func(t *testing.T) {
		b.do(chromedp.Navigate(s.url+"/"), chromedp.WaitVisible(css("table.models")), chromedp.KeyEvent("\t"))
		if got := b.eval(`document.activeElement.textContent`); got != "Skip to content" {
			t.Fatalf("first Tab focuses %q", got)
		}
		b.do(chromedp.KeyEvent("\r"))
		if got := b.eval(`document.activeElement.id`); got != "main" {
			t.Fatalf("the skip link moved focus to %q", got)
		}
	})

	t.Run("phone width", func(t *testing.T) {
		b.do(chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2)), chromedp.Navigate(s.url+"/"), chromedp.WaitVisible(css("table.models")))
		if w := b.eval(`String(document.documentElement.scrollWidth)`); w != "390" {
			t.Errorf("the list scrolls sideways on a phone: %s px wide", w)
		}
		b.screenshot("10-models-phone")
		b.do(chromedp.Navigate(s.url+"/models/"+readyID), chromedp.WaitVisible(css("#h-output")))
		if w := b.eval(`String(document.documentElement.scrollWidth)`); w != "390" {
			t.Errorf("the model page scrolls sideways on a phone: %s px wide", w)
		}
		b.screenshot("11-model-phone")
		b.do(chromedp.EmulateViewport(1280, 900))
	})

	t.Run("sign out", func(t *testing.T) {
		b.do(chromedp.Navigate(s.url+"/"), chromedp.Click(css(".signout button")), chromedp.WaitVisible(css("#token")))
		b.screenshot("12-signed-out")
	})

	for _, m := range b.messages() {
		// The wrong token (401) and the invalid form (400) are answered
		// with those statuses on purpose; the browser logs them.
		expected := strings.Contains(m.Text, "Failed to load resource") && (strings.Contains(m.Text, "status of 401") || strings.Contains(m.Text, "status of 400"))
		if strings.Contains(m.Text, "Content Security Policy") || m.IsException() || m.Type == chromedp.ConsoleError && !expected {
			t.Errorf("browser console: %s (%s)", m, m.URL)
		}
	}
}
