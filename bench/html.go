package bench

import (
	"fmt"
	"html/template"
	"io"
	"math"
	"strings"
)

// WriteHTML writes a self-contained HTML page for r: the summary, charts
// of throughput and latency percentiles over time (and for a sweep,
// latency against throughput per step) as inline SVG, and the text
// report. It loads nothing from elsewhere.
func WriteHTML(w io.Writer, r *Result) error {
	var text strings.Builder
	WriteText(&text, r)
	data := struct {
		R      *Result
		Text   string
		Charts []template.HTML
	}{R: r, Text: text.String()}

	var thr, pub []float64
	var xs []float64
	var p50, p90, p99, pmax []float64
	var stepMarks []float64
	lastStep := -1
	for _, s := range r.Series {
		secs := s.Seconds
		if secs <= 0 {
			secs = 1
		}
		xs = append(xs, s.T)
		thr = append(thr, float64(s.Delivered)/secs)
		pub = append(pub, float64(s.Published)/secs)
		p50, p90, p99, pmax = append(p50, s.P50), append(p90, s.P90), append(p99, s.P99), append(pmax, s.Max)
		if s.Step != lastStep && lastStep >= 0 {
			stepMarks = append(stepMarks, s.T-s.Seconds)
		}
		lastStep = s.Step
	}
	if len(xs) > 0 {
		data.Charts = append(data.Charts,
			svgChart(chart{
				Title: "Throughput", XLabel: "seconds", YLabel: "messages per second",
				Series: []chartSeries{
					{Name: "delivered/s", Color: "#1f77b4", X: xs, Y: thr},
					{Name: "published/s", Color: "#ff7f0e", X: xs, Y: pub},
				},
				VLines: stepMarks,
			}),
			svgChart(chart{
				Title: "End-to-end latency per second", XLabel: "seconds", YLabel: "milliseconds (log)", LogY: true,
				Series: []chartSeries{
					{Name: "p50", Color: "#2ca02c", X: xs, Y: p50},
					{Name: "p90", Color: "#1f77b4", X: xs, Y: p90},
					{Name: "p99", Color: "#d62728", X: xs, Y: p99},
					{Name: "max", Color: "#7f7f7f", X: xs, Y: pmax},
				},
				VLines: stepMarks,
				HLines: boundLine(r),
			}))
	}
	if len(r.Steps) > 1 {
		var dx, d50, d99, d999 []float64
		for _, s := range r.Steps {
			if s.Latency.Count == 0 {
				continue
			}
			dx = append(dx, s.DeliveredPerSec)
			d50, d99, d999 = append(d50, s.Latency.P50), append(d99, s.Latency.P99), append(d999, s.Latency.P999)
		}
		sortByX(dx, d50, d99, d999)
		data.Charts = append(data.Charts, svgChart(chart{
			Title: "Latency against delivered throughput (sweep steps)", XLabel: "delivered messages per second", YLabel: "milliseconds (log)", LogY: true,
			Series: []chartSeries{
				{Name: "p50", Color: "#2ca02c", X: dx, Y: d50, Dots: true},
				{Name: "p99", Color: "#d62728", X: dx, Y: d99, Dots: true},
				{Name: "p99.9", Color: "#9467bd", X: dx, Y: d999, Dots: true},
			},
			HLines: boundLine(r),
		}))
	}
	return htmlPage.Execute(w, data)
}

func boundLine(r *Result) []hline {
	if r.Scenario != Sweep || r.Config.P99Bound <= 0 {
		return nil
	}
	ms := float64(r.Config.P99Bound.Microseconds()) / 1000
	return []hline{{Y: ms, Label: fmt.Sprintf("p99 bound %s", r.Config.P99Bound)}}
}

// sortByX sorts parallel slices by the first (insertion sort: few points).
func sortByX(x []float64, ys ...[]float64) {
	for i := 1; i < len(x); i++ {
		for j := i; j > 0 && x[j] < x[j-1]; j-- {
			x[j], x[j-1] = x[j-1], x[j]
			for _, y := range ys {
				y[j], y[j-1] = y[j-1], y[j]
			}
		}
	}
}

type chartSeries struct {
	Name, Color string
	X, Y        []float64
	Dots        bool
}

type hline struct {
	Y     float64
	Label string
}

type chart struct {
	Title, XLabel, YLabel string
	Series                []chartSeries
	LogY                  bool
	VLines                []float64
	HLines                []hline
}

const (
	chartW, chartH                 = 880.0, 320.0
	padL, padR, padT, padB         = 72.0, 150.0, 34.0, 44.0
	plotW, plotH                   = chartW - padL - padR, chartH - padT - padB
	minLogMS               float64 = 0.001
)

// svgChart draws a line chart as an inline SVG element.
func svgChart(c chart) template.HTML {
	xmin, xmax := math.Inf(1), math.Inf(-1)
	ymin, ymax := math.Inf(1), math.Inf(-1)
	for _, s := range c.Series {
		for i, x := range s.X {
			y := s.Y[i]
			if c.LogY && y <= 0 {
				continue
			}
			xmin, xmax = math.Min(xmin, x), math.Max(xmax, x)
			ymin, ymax = math.Min(ymin, y), math.Max(ymax, y)
		}
	}
	for _, h := range c.HLines {
		ymin, ymax = math.Min(ymin, h.Y), math.Max(ymax, h.Y)
	}
	if math.IsInf(xmin, 0) {
		xmin, xmax, ymin, ymax = 0, 1, 0, 1
	}
	if xmax == xmin {
		xmax = xmin + 1
	}
	var yticks []float64
	var fy func(float64) float64
	if c.LogY {
		lo := math.Floor(math.Log10(math.Max(ymin, minLogMS)))
		hi := math.Ceil(math.Log10(math.Max(ymax, minLogMS*10)))
		if hi <= lo {
			hi = lo + 1
		}
		for e := lo; e <= hi; e++ {
			yticks = append(yticks, math.Pow(10, e))
		}
		fy = func(y float64) float64 {
			y = math.Max(y, math.Pow(10, lo))
			return padT + plotH - (math.Log10(y)-lo)/(hi-lo)*plotH
		}
	} else {
		ymin = 0
		step := niceStep(ymax - ymin)
		ymax = math.Ceil(ymax/step) * step
		if ymax == 0 {
			ymax = 1
			step = 0.2
		}
		for y := 0.0; y <= ymax+step/2; y += step {
			yticks = append(yticks, y)
		}
		fy = func(y float64) float64 { return padT + plotH - (y-ymin)/(ymax-ymin)*plotH }
	}
	fx := func(x float64) float64 { return padL + (x-xmin)/(xmax-xmin)*plotW }

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %.0f %.0f" width="%.0f" height="%.0f" font-family="sans-serif" font-size="11">`, chartW, chartH, chartW, chartH)
	fmt.Fprintf(&b, `<text x="%.0f" y="18" font-size="14" font-weight="bold">%s</text>`, padL, esc(c.Title))
	fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="%.0f" height="%.0f" fill="#fafafa" stroke="#ccc"/>`, padL, padT, plotW, plotH)
	for _, y := range yticks {
		py := fy(y)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e4e4e4"/>`, padL, py, padL+plotW, py)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="end">%s</text>`, padL-6, py+4, fmtTick(y))
	}
	xstep := niceStep(xmax - xmin)
	for x := math.Ceil(xmin/xstep) * xstep; x <= xmax+xstep/1e6; x += xstep {
		px := fx(x)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e4e4e4"/>`, px, padT, px, padT+plotH)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`, px, padT+plotH+16, fmtTick(x))
	}
	for _, v := range c.VLines {
		if v >= xmin && v <= xmax {
			px := fx(v)
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#999" stroke-dasharray="3,3"/>`, px, padT, px, padT+plotH)
		}
	}
	for _, h := range c.HLines {
		py := fy(h.Y)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#d62728" stroke-dasharray="6,4"/>`, padL, py, padL+plotW, py)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" fill="#d62728">%s</text>`, padL+4, py-4, esc(h.Label))
	}
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`, padL+plotW/2, chartH-6, esc(c.XLabel))
	fmt.Fprintf(&b, `<text transform="translate(14 %.1f) rotate(-90)" text-anchor="middle">%s</text>`, padT+plotH/2, esc(c.YLabel))
	for i, s := range c.Series {
		var pts []string
		for j, x := range s.X {
			y := s.Y[j]
			if c.LogY && y <= 0 {
				continue
			}
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", fx(x), fy(y)))
		}
		if len(pts) > 0 {
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.6" points="%s"/>`, s.Color, strings.Join(pts, " "))
		}
		if s.Dots || len(pts) == 1 {
			for _, p := range pts {
				xy := strings.Split(p, ",")
				fmt.Fprintf(&b, `<circle cx="%s" cy="%s" r="3" fill="%s"/>`, xy[0], xy[1], s.Color)
			}
		}
		ly := padT + 14 + float64(i)*18
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="3"/>`, padL+plotW+12, ly-4, padL+plotW+32, ly-4, s.Color)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f">%s</text>`, padL+plotW+38, ly, esc(s.Name))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// niceStep returns a round tick spacing giving about five ticks.
func niceStep(span float64) float64 {
	if span <= 0 {
		return 1
	}
	raw := span / 5
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if raw <= m*mag {
			return m * mag
		}
	}
	return 10 * mag
}

func fmtTick(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%gM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%gk", v/1e3)
	}
	return fmt.Sprintf("%g", math.Round(v*1000)/1000)
}

func esc(s string) string { return template.HTMLEscapeString(s) }

var htmlPage = template.Must(template.New("report").Funcs(template.FuncMap{"inc": func(i int) int { return i + 1 }}).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>scc-bench {{.R.Name}}</title>
<style>
body{font-family:sans-serif;margin:24px;color:#222;max-width:960px}
h1{font-size:20px} h2{font-size:16px;margin-top:28px}
table{border-collapse:collapse;font-size:13px} td,th{border:1px solid #ddd;padding:4px 8px;text-align:right}
th{background:#f2f2f2} td:first-child,th:first-child{text-align:left}
pre{background:#f6f6f6;padding:12px;font-size:12px;overflow-x:auto}
.pass{color:#2a7d2a;font-weight:bold}.fail{color:#c62828;font-weight:bold}
</style></head><body>
<h1>scc-bench {{.R.Name}} <span class="{{if .R.Pass}}pass">PASS{{else}}fail">FAIL{{end}}</span></h1>
<p>{{.R.Config.Describe}}<br>Targets: {{range $i, $u := .R.Config.URLs}}{{if $i}}, {{end}}{{$u}}{{end}}.
Started {{.R.Start.Format "2006-01-02 15:04:05 MST"}} on {{.R.Host.Hostname}} ({{.R.Host.NumCPU}} CPUs{{if .R.Host.CPUAffinity}}, bench on CPU {{.R.Host.CPUAffinity}}{{end}}, {{.R.Host.Procs}} process(es)).</p>
<table><tr><th>delivered msg/s</th><th>published msg/s</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th><th>p99.9 ms</th><th>max ms</th><th>expected</th><th>received</th><th>lost</th><th>duplicated</th><th>out of order</th></tr>
<tr><td>{{printf "%.0f" .R.DeliveredPerSec}}</td><td>{{printf "%.0f" .R.PublishedPerSec}}</td><td>{{printf "%.3f" .R.Latency.P50}}</td><td>{{printf "%.3f" .R.Latency.P90}}</td><td>{{printf "%.3f" .R.Latency.P99}}</td><td>{{printf "%.3f" .R.Latency.P999}}</td><td>{{printf "%.3f" .R.Latency.Max}}</td><td>{{.R.Check.Expected}}</td><td>{{.R.Check.Received}}</td><td>{{.R.Check.Lost}}</td><td>{{.R.Check.Duplicated}}</td><td>{{.R.Check.OutOfOrder}}</td></tr></table>
{{range .Charts}}<div>{{.}}</div>
{{end}}
{{if gt (len .R.Steps) 1}}<h2>Sweep steps</h2>
<table><tr><th>step</th><th>target msg/s</th><th>published msg/s</th><th>delivered msg/s</th><th>p50 ms</th><th>p99 ms</th><th>max ms</th><th>lost</th><th>result</th></tr>
{{range $i, $s := .R.Steps}}<tr><td>{{inc $i}}</td><td>{{printf "%.0f" $s.Rate}}</td><td>{{printf "%.0f" $s.PublishedPerSec}}</td><td>{{printf "%.0f" $s.DeliveredPerSec}}</td><td>{{printf "%.3f" $s.Latency.P50}}</td><td>{{printf "%.3f" $s.Latency.P99}}</td><td>{{printf "%.3f" $s.Latency.Max}}</td><td>{{$s.Check.Lost}}</td><td>{{if $s.Pass}}pass{{else}}{{$s.Reason}}{{end}}</td></tr>
{{end}}</table>{{end}}
<h2>Report</h2>
<pre>{{.Text}}</pre>
</body></html>
`))
