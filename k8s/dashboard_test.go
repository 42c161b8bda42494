package k8s

import (
	"bytes"
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
)

// dashboard is the part of a Grafana dashboard model the test checks.
type dashboard struct {
	Title      string `json:"title"`
	UID        string `json:"uid"`
	Templating struct {
		List []struct {
			Name string `json:"name"`
			Type string `json:"type"`
		} `json:"list"`
	} `json:"templating"`
	Panels []dashboardPanel `json:"panels"`
}

type dashboardPanel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	GridPos struct{ H, W, X, Y int } `json:"gridPos"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
}

const dashboardFile = "grafana/sccgo-dashboard.json"

// metricRef finds metric names in PromQL; names inside regex matchers
// (__name__=~"...") are patterns and are skipped by the caller.
var metricRef = regexp.MustCompile(`\bscc_[a-z0-9_]+\b`)

// TestGrafanaDashboard checks that the dashboard is valid JSON with a
// sound layout, that every query is well formed and uses the data source
// variable, and that it covers what operators need to see.
func TestGrafanaDashboard(t *testing.T) {
	data, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	if !json.Valid(data) {
		t.Fatalf("%s is not valid JSON", dashboardFile)
	}
	var d dashboard
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if d.Title == "" || d.UID == "" {
		t.Errorf("dashboard needs a title and a uid")
	}
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type
	}
	if vars["datasource"] != "datasource" {
		t.Errorf("no datasource variable; panels must not pin a data source")
	}
	if _, ok := vars["namespace"]; !ok {
		t.Errorf("no namespace variable")
	}

	ids := map[int]string{}
	type cell struct{ x, y int }
	taken := map[cell]string{}
	metrics := map[string]bool{}
	for _, p := range d.Panels {
		if prev, dup := ids[p.ID]; dup || p.ID == 0 {
			t.Errorf("panel %q: id %d not unique (also %q)", p.Title, p.ID, prev)
		}
		ids[p.ID] = p.Title
		g := p.GridPos
		if g.W <= 0 || g.H <= 0 || g.X < 0 || g.Y < 0 || g.X+g.W > 24 {
			t.Errorf("panel %q: gridPos %+v outside the 24-column grid", p.Title, g)
		}
		for x := g.X; x < g.X+g.W; x++ {
			for y := g.Y; y < g.Y+g.H; y++ {
				if other, ok := taken[cell{x, y}]; ok {
					t.Errorf("panel %q overlaps %q at (%d,%d)", p.Title, other, x, y)
					x, y = g.X+g.W, g.Y+g.H // one report per pair is enough
					continue
				}
				taken[cell{x, y}] = p.Title
			}
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q: datasource must be ${datasource}", p.Title)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q: no queries", p.Title)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if tg.RefID == "" || refs[tg.RefID] {
				t.Errorf("panel %q: refId %q empty or repeated", p.Title, tg.RefID)
			}
			refs[tg.RefID] = true
			if err := checkPromQLShape(tg.Expr); err != "" {
				t.Errorf("panel %q: %s: %q", p.Title, err, tg.Expr)
			}
			if !strings.Contains(tg.Expr, `namespace=~"$namespace"`) {
				t.Errorf("panel %q: query ignores the namespace variable: %q", p.Title, tg.Expr)
			}
			expr := regexp.MustCompile(`__name__=~"[^"]*"`).ReplaceAllString(tg.Expr, "")
			for _, m := range metricRef.FindAllString(expr, -1) {
				metrics[m] = true
			}
		}
	}
	// What an operator must be able to see (see the task's list).
	for _, m := range []string{
		"scc_frontend_connections",
		"scc_frontend_messages_in_total", "scc_frontend_messages_out_total",
		"scc_frontend_queue_drops_total", "scc_frontend_route_drops_total", "scc_broker_drops_total",
		"scc_frontend_closes_total",
		"scc_state_ring_version", "scc_frontend_ring_version",
		"scc_state_reshard_duration_seconds_bucket",
	} {
		if !metrics[m] {
			t.Errorf("no panel queries %s", m)
		}
	}
}

// checkPromQLShape catches the typos a dashboard edit makes most often:
// unbalanced brackets and quotes. It returns "" when the shape is fine.
func checkPromQLShape(expr string) string {
	if strings.TrimSpace(expr) == "" {
		return "empty query"
	}
	var stack []rune
	inQuote := false
	pairs := map[rune]rune{')': '(', ']': '[', '}': '{'}
	for i, r := range expr {
		if inQuote {
			if r == '"' && (i == 0 || expr[i-1] != '\\') {
				inQuote = false
			}
			continue
		}
		switch r {
		case '"':
			inQuote = true
		case '(', '[', '{':
			stack = append(stack, r)
		case ')', ']', '}':
			if len(stack) == 0 || stack[len(stack)-1] != pairs[r] {
				return "unbalanced " + string(r)
			}
			stack = stack[:len(stack)-1]
		}
	}
	if inQuote {
		return "unterminated string"
	}
	if len(stack) > 0 {
		return "unclosed " + string(stack[len(stack)-1])
	}
	return ""
}

func TestCheckPromQLShape(t *testing.T) {
	for expr, want := range map[string]bool{
		`sum by (le) (rate(x_bucket{a=~"$b"}[$__rate_interval]))`: true,
		`sum(rate({__name__=~"scc_.+_total"}[5m]))`:               true,
		`sum(rate(x[5m])`:     false,
		`sum(rate(x[5m)))`:    false,
		`x{a="b}`:             false,
		`  `:                  false,
		`x{a="(("}`:           true,
		`histogram(x{a}])`:    false,
		`rate(x{a="\""}[1m])`: true,
	} {
		if got := checkPromQLShape(expr) == ""; got != want {
			t.Errorf("checkPromQLShape(%q) ok=%v, want %v", expr, got, want)
		}
	}
}
