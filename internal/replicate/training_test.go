package replicate

import (
	"strings"
	"testing"
	"time"
)

const succeededPayload = `{
  "id": "r7k2m9x4c1rm80cq3ftw6n8e5a", "model": "ostris/flux-dev-lora-trainer",
  "version": "e440909d3512c31646ee2e0c7d6f6f4923224863a6a10c494606e79fb5844497",
  "input": {"steps": 1000}, "logs": "Loading\n 99%|█████████▉| 999/1000\nSaving weights\n",
  "output": {"version": "acme/portrait-lora:81592a3e9edf0b50fd80f19c04f5a318b8b9244745ee95294822bc8a5ff27ed1",
             "weights": "https://replicate.delivery/xezq/abc/trained_model.tar"},
  "error": null, "status": "succeeded", "source": "api", "data_removed": false,
  "created_at": "2025-03-04T10:15:02.118Z", "started_at": "2025-03-04T10:15:09.902431Z",
  "completed_at": "2025-03-04T10:36:47.551207123Z", "metrics": {"predict_time": 1297.648776},
  "urls": {"get": "https://api.replicate.com/v1/trainings/r7k2m9x4c1rm80cq3ftw6n8e5a"},
  "some_future_field": {"x": 1}
}`

func TestParseTraining(t *testing.T) {
	tr, err := ParseTraining([]byte(succeededPayload))
	if err != nil {
		t.Fatal(err)
	}
	if tr.ID != "r7k2m9x4c1rm80cq3ftw6n8e5a" || tr.Status != "succeeded" || !tr.Terminal() {
		t.Fatalf("%+v", tr)
	}
	want := time.Date(2025, 3, 4, 10, 36, 47, 551207123, time.UTC)
	if tr.CompletedAt == nil || !tr.CompletedAt.Equal(want) || tr.CreatedAt.Nanosecond() != 118000000 {
		t.Fatalf("times %v %v", tr.CompletedAt, tr.CreatedAt)
	}
	obs := tr.Observation("webhook", "msg_1", want)
	if !strings.Contains(string(obs.Output), "trained_model.tar") || obs.Error != "" || obs.Remote != "succeeded" {
		t.Fatalf("%+v", obs)
	}
}

func TestParseTrainingRefuses(t *testing.T) {
	cases := map[string]string{
		"not json":        `hello`,
		"array":           `[{"id":"a","status":"succeeded"}]`,
		"no id":           `{"status":"succeeded"}`,
		"empty id":        `{"id":"","status":"succeeded"}`,
		"no status":       `{"id":"abc"}`,
		"id wrong type":   `{"id":42,"status":"succeeded"}`,
		"status wrong":    `{"id":"a","status":["succeeded"]}`,
		"logs wrong type": `{"id":"a","status":"succeeded","logs":{}}`,
		"trailing data":   `{"id":"a","status":"succeeded"} {}`,
		"logs wrong (v2)": `{"id":"a","status":"succeeded","input":{"x":}}`,
		"time wrong":      `{"id":"a","status":"succeeded","completed_at":"yesterday"}`,
		"id too long":     `{"id":"` + strings.Repeat("a", 200) + `","status":"succeeded"}`,
	}
	for name, body := range cases {
		if _, err := ParseTraining([]byte(body)); err == nil {
			t.Errorf("%s: accepted", name)
		}
		if _, err := ParseReport([]byte(body)); err == nil {
			t.Errorf("%s: ParseReport accepted", name)
		}
	}
}

func TestErrorText(t *testing.T) {
	for raw, want := range map[string]string{`"boom"`: "boom", `null`: "", ``: "", `{"detail":"x"}`: `{"detail":"x"}`} {
		if got := (Training{Error: []byte(raw)}).ErrorText(); got != want {
			t.Errorf("%s: %q", raw, got)
		}
	}
}

func FuzzParseTraining(f *testing.F) {
	f.Add([]byte(succeededPayload))
	f.Add([]byte(`{"id":"a","status":"processing","logs":" 1%|"}`))
	f.Add([]byte(`{"id":"a","status":"x","output":[1,2],"error":{"a":1}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		tr, err := ParseTraining(body)
		rep, rerr := ParseReport(body)
		// ParseReport checks only the fields it keeps, so it accepts
		// everything ParseTraining does, and reads them the same.
		if err == nil && rerr != nil {
			t.Fatalf("ParseTraining accepted but ParseReport %v", rerr)
		}
		if err != nil {
			return
		}
		if rep.ID != tr.ID || rep.Status != tr.Status || rep.Logs != tr.Logs || string(rep.Output) != string(tr.Output) || rep.ErrorText() != tr.ErrorText() {
			t.Fatalf("ParseReport differs: %+v vs %+v", rep, tr)
		}
		if strings.TrimSpace(tr.ID) == "" || strings.TrimSpace(tr.Status) == "" {
			t.Fatal("accepted without id or status")
		}
		_ = tr.Observation("webhook", "x", time.Time{})
	})
}

func BenchmarkParseTraining(b *testing.B) {
	body := []byte(strings.Replace(succeededPayload, `"logs": "Loading\n`, `"logs": "Loading\n`+strings.Repeat(` 40%|####      | 400/1000 [00:12<00:18, 33.1it/s]\n`, 60), 1))
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseTraining(body); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseReport(b *testing.B) {
	body := []byte(strings.Replace(succeededPayload, `"logs": "Loading\n`, `"logs": "Loading\n`+strings.Repeat(" 40%|####      | 400/1000 [00:12<00:18, 33.1it/s]\\n", 60), 1))
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseReport(body); err != nil {
			b.Fatal(err)
		}
	}
}
