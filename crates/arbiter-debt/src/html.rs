//! The report as one self-contained HTML page: inline CSS and SVG charts drawn here, no
//! script, no font or file fetched, so it opens from disk or from the API alike.

use crate::report::Report;
use crate::{date, Owasp};
use std::fmt::Write;

/// Rows shown in the ranking and findings tables (the JSON has them all).
const TABLE_ROWS: usize = 200;
/// Owners in the chart.
const TOP_OWNERS: usize = 10;
/// Owners, and teams, drawn with their trend.
const TOP_TRENDS: usize = 8;

/// Escapes text for HTML content and attribute values.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(ch),
        }
    }
    out
}

/// Renders `report` (with its history) as a complete HTML document.
pub fn render(report: &Report) -> String {
    let mut page = String::with_capacity(64 * 1024);
    let scores = &report.scores;
    let _ = write!(
        page,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Arbiter trust debt — {date}</title>
<style>
body{{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;max-width:1100px;color:#1d2430;padding:0 1rem}}
h1{{font-size:1.6rem;margin-bottom:.2rem}} h2{{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #d8dde6;padding-bottom:.3rem}}
.muted{{color:#5b6577}} .cards{{display:flex;gap:1rem;flex-wrap:wrap;margin:1rem 0}}
.card{{border:1px solid #d8dde6;border-radius:8px;padding:.8rem 1rem;min-width:150px}} .card b{{display:block;font-size:1.5rem}}
.charts{{display:grid;grid-template-columns:repeat(auto-fit,minmax(330px,1fr));gap:1.2rem}}
figure{{margin:0;border:1px solid #d8dde6;border-radius:8px;padding:.6rem}} figcaption{{font-weight:600;margin-bottom:.4rem}}
table{{border-collapse:collapse;width:100%;font-size:.88rem}} th,td{{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #eceff4;vertical-align:top}}
th{{background:#f5f7fa}} .sev-critical{{color:#8b0000;font-weight:700}} .sev-high{{color:#c0392b;font-weight:600}} .sev-medium{{color:#b9770e}} .sev-low{{color:#5b6577}}
code{{font-size:.85em}} svg text{{font-family:inherit}}
</style></head><body>
<h1>Trust debt</h1>
<p class="muted">Computed {date} over {decisions} recorded decisions ({window} in the last {days} days) and {analysed} active non-human identities.</p>
<div class="cards">
<div class="card" id="overall">Overall score<b>{overall:.1}</b><span class="muted">mean of 0–100 per identity</span></div>
<div class="card">Identities with debt<b>{with_debt}</b><span class="muted">of {analysed}</span></div>
<div class="card">Findings<b>{findings}</b><span class="muted">{high} high or worse</span></div>
<div class="card">Suggestions<b>{suggestions}</b><span class="muted">checked by replay</span></div>
</div>
<div class="charts">
"#,
        date = esc(&date(report.generated_at)),
        decisions = report.usage.decisions,
        window = report.usage.window_decisions,
        days = report.thresholds.usage_window_days,
        analysed = report.identities_analysed,
        overall = scores.overall,
        with_debt = scores.identities_with_debt,
        findings = report.findings.len(),
        high = scores.by_severity.get("high").copied().unwrap_or(0)
            + scores.by_severity.get("critical").copied().unwrap_or(0),
        suggestions = report.suggestions.len(),
    );
    page.push_str(&trend_chart(report));
    page.push_str(&owasp_chart(report));
    page.push_str(&owners_chart(report));
    page.push_str(&group_trends_chart(
        "chart-owner-trends",
        "Top owners: debt over time",
        "owner-spark",
        &report.scores.owners,
    ));
    page.push_str(&group_trends_chart(
        "chart-team-trends",
        "Top teams: debt over time",
        "team-spark",
        &report.scores.teams,
    ));
    page.push_str("</div>\n");

    page.push_str("<h2>Identities by debt</h2>\n<table id=\"ranking\"><thead><tr><th>#</th><th>identity</th><th>score</th><th>findings</th><th>owner</th><th>team</th><th>unrotated days</th><th>unused grants</th></tr></thead><tbody>\n");
    for (rank, debt) in report.ranking.iter().take(TABLE_ROWS).enumerate() {
        let kinds: Vec<&str> = debt.kinds.iter().map(|kind| kind.as_str()).collect();
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            rank + 1,
            esc(&debt.identity),
            debt.score,
            esc(&kinds.join(", ")),
            esc(debt.owner.as_deref().unwrap_or("—")),
            esc(debt.team.as_deref().unwrap_or("—")),
            debt.figures.unrotated_days,
            debt.figures.unused_grants
        );
    }
    page.push_str("</tbody></table>\n");
    if report.ranking.len() > TABLE_ROWS {
        let _ = writeln!(
            page,
            "<p class=\"muted\">{} more in the JSON report.</p>",
            report.ranking.len() - TABLE_ROWS
        );
    }

    page.push_str("<h2>Findings</h2>\n<table id=\"findings\"><thead><tr><th>severity</th><th>OWASP</th><th>identity</th><th>evidence</th><th>fix</th></tr></thead><tbody>\n");
    for finding in report.findings.iter().take(TABLE_ROWS) {
        let _ = writeln!(
            page,
            "<tr><td class=\"sev-{sev}\">{sev}</td><td title=\"{title}\">{code}</td><td><code>{identity}</code></td><td>{summary}</td><td>{fix}</td></tr>",
            sev = finding.severity.as_str(),
            title = esc(finding.owasp.title()),
            code = finding.owasp.code(),
            identity = esc(&finding.identity),
            summary = esc(&finding.summary),
            fix = esc(&finding.fix),
        );
    }
    page.push_str("</tbody></table>\n");

    page.push_str("<h2>Least-privilege suggestions</h2>\n");
    if report.suggestions.is_empty() {
        page.push_str("<p class=\"muted\">None.</p>\n");
    } else {
        page.push_str("<table id=\"suggestions\"><thead><tr><th>id</th><th>identity</th><th>removes</th><th>replay</th></tr></thead><tbody>\n");
        for suggestion in &report.suggestions {
            let verdict = match &suggestion.check {
                Some(check) => format!(
                    "changes {} of {} decisions since {}",
                    check.changed,
                    check.evaluated,
                    date(check.since)
                ),
                None => "not checked".to_owned(),
            };
            let _ = writeln!(
                page,
                "<tr><td><code>{}</code></td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                esc(&suggestion.id),
                esc(&suggestion.identity),
                esc(&suggestion.removes.join(", ")),
                esc(&verdict)
            );
        }
        page.push_str("</tbody></table>\n<p class=\"muted\">Apply one with <code>arbiter debt apply &lt;id&gt; --reason …</code>.</p>\n");
    }
    let _ = writeln!(
        page,
        "<h2>Thresholds</h2>\n<pre>{}</pre>\n</body></html>",
        esc(&serde_json::to_string_pretty(&report.thresholds).unwrap_or_default())
    );
    page
}

const WIDTH: f64 = 340.0;
const HEIGHT: f64 = 200.0;
const LEFT: f64 = 40.0;
const BOTTOM: f64 = 30.0;
const TOP: f64 = 12.0;

fn figure(id: &str, caption: &str, label: &str, body: &str) -> String {
    format!(
        "<figure><figcaption>{caption}</figcaption><svg id=\"{id}\" role=\"img\" aria-label=\"{label}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" width=\"100%\" xmlns=\"http://www.w3.org/2000/svg\">{body}</svg></figure>\n",
        caption = esc(caption),
        label = esc(label),
    )
}

fn axes(max: f64) -> String {
    let mut out = String::new();
    let plot = HEIGHT - BOTTOM - TOP;
    for step in 0..=4 {
        let value = max * f64::from(step) / 4.0;
        let y = HEIGHT - BOTTOM - plot * f64::from(step) / 4.0;
        let _ = write!(
            out,
            "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{}\" y2=\"{y:.1}\" stroke=\"#eceff4\"/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"9\" text-anchor=\"end\" fill=\"#5b6577\">{}</text>",
            WIDTH - 6.0,
            LEFT - 4.0,
            y + 3.0,
            if max >= 10.0 { format!("{value:.0}") } else { format!("{value:.1}") }
        );
    }
    out
}

fn trend_chart(report: &Report) -> String {
    let mut points: Vec<(i64, f64)> = report
        .history
        .iter()
        .map(|point| (point.at, point.score))
        .collect();
    if points
        .last()
        .is_none_or(|(at, _)| *at != report.generated_at)
    {
        points.push((report.generated_at, report.scores.overall));
    }
    let max = points
        .iter()
        .map(|(_, score)| *score)
        .fold(1.0_f64, f64::max)
        .ceil();
    let plot_w = WIDTH - LEFT - 10.0;
    let plot_h = HEIGHT - BOTTOM - TOP;
    let n = points.len();
    let x_of = |idx: usize| {
        if n <= 1 {
            LEFT + plot_w / 2.0
        } else {
            LEFT + plot_w * idx as f64 / (n - 1) as f64
        }
    };
    let y_of = |score: f64| HEIGHT - BOTTOM - plot_h * score / max;
    let mut body = axes(max);
    let path: Vec<String> = points
        .iter()
        .enumerate()
        .map(|(idx, (_, score))| format!("{:.1},{:.1}", x_of(idx), y_of(*score)))
        .collect();
    let _ = write!(
        body,
        "<polyline class=\"trend\" points=\"{}\" fill=\"none\" stroke=\"#2e6bd1\" stroke-width=\"2\"/>",
        path.join(" ")
    );
    for (idx, (at, score)) in points.iter().enumerate() {
        let _ = write!(
            body,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"#2e6bd1\"><title>{}: {score:.1}</title></circle>",
            x_of(idx),
            y_of(*score),
            esc(&date(*at))
        );
    }
    if let (Some((first, _)), Some((last, _))) = (points.first(), points.last()) {
        let _ = write!(
            body,
            "<text x=\"{LEFT}\" y=\"{:.1}\" font-size=\"9\" fill=\"#5b6577\">{}</text><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"9\" text-anchor=\"end\" fill=\"#5b6577\">{}</text>",
            HEIGHT - 10.0,
            esc(&date(*first)),
            WIDTH - 10.0,
            HEIGHT - 10.0,
            esc(&date(*last))
        );
    }
    figure(
        "chart-trend",
        "Overall score over time",
        &format!("overall trust-debt score over {n} reports"),
        &body,
    )
}

fn bars(labels: &[(String, u64)], color: &str, class: &str) -> String {
    let max = labels
        .iter()
        .map(|(_, value)| *value)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let plot_w = WIDTH - LEFT - 10.0;
    let plot_h = HEIGHT - BOTTOM - TOP;
    let slot = plot_w / labels.len().max(1) as f64;
    let mut body = axes(max);
    for (idx, (label, value)) in labels.iter().enumerate() {
        let height = plot_h * *value as f64 / max;
        let x = LEFT + slot * idx as f64 + slot * 0.15;
        let _ = write!(
            body,
            "<rect class=\"{class}\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{height:.1}\" fill=\"{color}\"><title>{}: {value}</title></rect><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"8\" text-anchor=\"middle\" fill=\"#1d2430\">{}</text>",
            HEIGHT - BOTTOM - height,
            slot * 0.7,
            esc(label),
            x + slot * 0.35,
            HEIGHT - BOTTOM + 11.0,
            esc(label),
        );
    }
    body
}

fn owasp_chart(report: &Report) -> String {
    let labels: Vec<(String, u64)> = Owasp::ALL
        .iter()
        .map(|item| {
            (
                item.code().to_owned(),
                report
                    .scores
                    .by_owasp
                    .get(item.code())
                    .copied()
                    .unwrap_or(0),
            )
        })
        .collect();
    figure(
        "chart-owasp",
        "Findings by OWASP NHI Top 10 item",
        "findings per OWASP non-human identity item",
        &bars(&labels, "#c0392b", "owasp-bar"),
    )
}

fn owners_chart(report: &Report) -> String {
    let owners = &report.scores.owners;
    let top = owners.iter().take(TOP_OWNERS);
    let plot_w = WIDTH - 130.0 - 30.0;
    let row = (HEIGHT - 10.0) / TOP_OWNERS as f64;
    let max = owners.first().map_or(1, |owner| owner.total.max(1)) as f64;
    let mut body = String::new();
    for (idx, owner) in top.enumerate() {
        let y = 5.0 + row * idx as f64;
        let width = plot_w * owner.total as f64 / max;
        let name = owner
            .key
            .strip_prefix("Human::\"")
            .and_then(|rest| rest.strip_suffix('"'))
            .unwrap_or(&owner.key);
        let _ = write!(
            body,
            "<text x=\"125\" y=\"{:.1}\" font-size=\"9\" text-anchor=\"end\" fill=\"#1d2430\">{}</text><rect class=\"owner-bar\" x=\"130\" y=\"{y:.1}\" width=\"{width:.1}\" height=\"{:.1}\" fill=\"#8e44ad\"><title>{}: {} points, {} identities</title></rect><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"9\" fill=\"#5b6577\">{}</text>",
            y + row * 0.6,
            esc(name),
            row * 0.75,
            esc(&owner.key),
            owner.total,
            owner.identities,
            130.0 + width + 3.0,
            y + row * 0.6,
            owner.total
        );
    }
    if owners.is_empty() {
        body.push_str("<text x=\"170\" y=\"100\" font-size=\"11\" text-anchor=\"middle\" fill=\"#5b6577\">no debt</text>");
    }
    figure(
        "chart-owners",
        "Top owners by debt (points)",
        "owners ranked by the trust-debt points of the identities they own",
        &body,
    )
}

/// One row per top owner or team: its name, a sparkline of its debt points over the reports
/// kept (each line scaled to its own maximum, so its shape shows however small it is), its
/// points now and the change since the last report.
fn group_trends_chart(
    id: &str,
    caption: &str,
    class: &str,
    groups: &[crate::GroupScore],
) -> String {
    let row = (HEIGHT - 10.0) / TOP_TRENDS as f64;
    let (name_w, spark_x, spark_w) = (120.0, 125.0, 130.0);
    let mut body = String::new();
    for (idx, group) in groups.iter().take(TOP_TRENDS).enumerate() {
        let top = 5.0 + row * idx as f64;
        let mut values: Vec<u64> = group.trend.iter().map(|point| point.total).collect();
        if values.is_empty() {
            values.push(group.total);
        }
        if values.len() == 1 {
            // A single report draws as a flat line rather than nothing.
            values.push(group.total);
        }
        let max = values.iter().copied().max().unwrap_or(0).max(1) as f64;
        let n = values.len();
        let points: Vec<String> = values
            .iter()
            .enumerate()
            .map(|(at, value)| {
                let x = spark_x + spark_w * at as f64 / (n - 1).max(1) as f64;
                let y = top + row * 0.85 - row * 0.7 * *value as f64 / max;
                format!("{x:.1},{y:.1}")
            })
            .collect();
        let name = group
            .key
            .strip_prefix("Human::\"")
            .and_then(|rest| rest.strip_suffix('"'))
            .unwrap_or(&group.key);
        let (delta, color) = match group.delta {
            None => ("new".to_owned(), "#5b6577"),
            Some(0) => ("±0".to_owned(), "#5b6577"),
            Some(delta) if delta > 0 => (format!("+{delta}"), "#c0392b"),
            Some(delta) => (format!("−{}", delta.unsigned_abs()), "#1e8449"),
        };
        let _ = write!(
            body,
            "<text x=\"{name_w}\" y=\"{:.1}\" font-size=\"9\" text-anchor=\"end\" fill=\"#1d2430\">{}</text><polyline class=\"{class}\" points=\"{}\" fill=\"none\" stroke=\"#8e44ad\" stroke-width=\"1.5\"><title>{}: {}</title></polyline><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"9\" fill=\"#1d2430\">{}</text><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"9\" fill=\"{color}\">{}</text>",
            top + row * 0.6,
            esc(name),
            points.join(" "),
            esc(&group.key),
            esc(&group
                .trend
                .iter()
                .map(|point| format!("{} {}", date(point.at), point.total))
                .collect::<Vec<_>>()
                .join(", ")),
            spark_x + spark_w + 8.0,
            top + row * 0.6,
            group.total,
            spark_x + spark_w + 38.0,
            top + row * 0.6,
            esc(&delta),
        );
    }
    if groups.is_empty() {
        body.push_str("<text x=\"170\" y=\"100\" font-size=\"11\" text-anchor=\"middle\" fill=\"#5b6577\">no debt</text>");
    }
    figure(
        id,
        caption,
        &format!("{caption}, with the change since the last report"),
        &body,
    )
}
