package web_test

import (
	"github.com/trainhook/trainhook/internal/apptest"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/trainhook/trainhook/internal/fakereplicate"
	"github.com/trainhook/trainhook/internal/training"
)

const simToken = "r8_dashboard_test"

// withSimulator starts the Replicate simulator and a trainhook using it,
// in polling mode.
func withSimulator(t *testing.T, o fakereplicate.Options) (*server, *fakereplicate.Server) {
	t.Helper()
	o.Token = simToken
	sim, base := apptest.Sim(t, o)
	s := start(t, map[string]string{"REPLICATE_BASE_URL": base, "REPLICATE_API_TOKEN": simToken, "TRAINHOOK_API_RATE_LIMIT": "3000"})
	return s, sim
}

func TestStartForm(t *testing.T) {
	t.Parallel()
	s, sim := withSimulator(t, fakereplicate.Options{Duration: 10 * time.Minute})
	page := s.get("/models/new")
	page.has(t, `<label for="trainer">Trainer</label>`, `<textarea id="input" name="input"`, `name="key" value="web-`)
	tok := csrfPattern.FindStringSubmatch(page.body)[1]
	key := regexp.MustCompile(`name="key" value="([^"]+)"`).FindStringSubmatch(page.body)[1]
	submit := func(v url.Values) response {
		v.Set("csrf", tok)
		return s.post("/models/new", v)
	}

	t.Run("messages next to the fields", func(t *testing.T) {
		r := submit(url.Values{"destination": {"trainhook-sim/portrait"}, "input": {"{\n  \"steps\": 10,\n}"}})
		if r.code != 400 {
			t.Fatalf("%d", r.code)
		}
		r.has(t, `<p class="field-error" id="trainer-error">Enter the trainer`, `aria-describedby="trainer-hint trainer-error" aria-invalid="true"`,
			`<p class="field-error" id="input-error">This is not valid JSON: invalid character &#39;}&#39; looking for beginning of object key string (line 3, column 1).</p>`,
			`value="trainhook-sim/portrait"`, "  &#34;steps&#34;: 10,")
		r = submit(url.Values{"trainer": {"ostris/flux-dev-lora-trainer"}, "destination": {"trainhook-sim/portrait"}, "input": {"[1]"}, "metadata": {"{"}})
		r.has(t, `id="input-error">Enter a JSON object`, `id="metadata-error">This is not valid JSON`)
		r = submit(url.Values{"trainer": {"Not A Trainer"}, "destination": {"trainhook-sim/portrait"}, "input": {"{}"}})
		if r.code != 400 {
			t.Fatalf("%d", r.code)
		}
		r.has(t, `id="trainer-error">&#34;trainer&#34; must be owner/model`)
	})
	t.Run("Replicate's refusal is shown", func(t *testing.T) {
		r := submit(url.Values{"trainer": {"nobody/no-such-trainer"}, "destination": {"trainhook-sim/portrait"}, "input": {"{}"}})
		if r.code != http.StatusUnprocessableEntity {
			t.Fatalf("%d %s", r.code, r.body)
		}
		r.has(t, `role="alert" id="form-error"`, "Replicate refused the training:", "See the failed model")
	})
	if n := len(sim.Trainings()); n != 0 {
		t.Fatalf("refused forms created %d trainings", n)
	}

	var id string
	t.Run("a good form starts the training", func(t *testing.T) {
		v := url.Values{"name": {"Portrait LoRA"}, "trainer": {"ostris/flux-dev-lora-trainer"}, "destination": {"trainhook-sim/portrait"},
			"input": {`{"input_images": "https://example.com/photos.zip", "steps": 100}`}, "metadata": {`{"user_id": "u_1"}`}, "key": {key}}
		r := submit(v)
		loc := r.header.Get("Location")
		if r.code != http.StatusSeeOther || !strings.HasSuffix(loc, "?notice=started") {
			t.Fatalf("%d %v %s", r.code, r.header, r.body)
		}
		id = strings.TrimSuffix(strings.TrimPrefix(loc, "/models/"), "?notice=started")
		s.get(loc).has(t, "The training was started on Replicate", "<h1>Portrait LoRA</h1>", "Training</span>",
			"<code>ostris/flux-dev-lora-trainer</code>", "&#34;user_id&#34;: &#34;u_1&#34;", "Cancel training")
		// The same form sent twice starts one training.
		if r := submit(v); r.header.Get("Location") != loc {
			t.Fatalf("double submit went to %q", r.header.Get("Location"))
		}
		if n := len(sim.Trainings()); n != 1 {
			t.Fatalf("%d trainings on Replicate", n)
		}
	})
	t.Run("cancel", func(t *testing.T) {
		ctok := s.csrf("/models/" + id)
		r := s.post("/models/"+id+"/cancel", url.Values{"csrf": {ctok}})
		if r.code != http.StatusSeeOther || r.header.Get("Location") != "/models/"+id+"?notice=canceled" {
			t.Fatalf("%d %v %s", r.code, r.header, r.body)
		}
		if d, _ := s.app.Service.Model(t.Context(), id); d.Status != training.Canceled {
			t.Fatalf("after cancel: %s", d.Status)
		}
		s.get("/models/"+id+"?notice=canceled").has(t, "The training was canceled.", "Canceled</span>")
		r = s.post("/models/"+id+"/cancel", url.Values{"csrf": {ctok}})
		if r.code != http.StatusConflict || !strings.Contains(r.body, "The training was not canceled: model "+id+" is already Canceled") {
			t.Fatalf("second cancel: %d %s", r.code, r.body)
		}
		if r := s.post("/models/nope/cancel", url.Values{"csrf": {ctok}}); r.code != 404 {
			t.Fatalf("cancel of an unknown model: %d", r.code)
		}
	})
}
