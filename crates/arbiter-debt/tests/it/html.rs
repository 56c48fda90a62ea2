//! The HTML report in a real headless Chromium: it renders, its charts are there with their
//! marks (the owner and team trends among them), and the browser logs no console message. Chromium is required: `.ci/run`
//! installs it, and without it this test fails rather than skips.

use crate::planted::{recorded, Recorded, DAY, NOW};
use arbiter_debt::{compute, html, History, RunOptions, Thresholds};
use std::path::Path;
use std::process::Command;

fn chromium() -> &'static str {
    for candidate in ["chromium", "chromium-browser", "google-chrome"] {
        let found = Command::new(candidate).arg("--version").output();
        if found.is_ok_and(|output| output.status.success()) {
            return candidate;
        }
    }
    panic!("no Chromium found: install it (`apt-get install -y chromium chromium-driver`, as .ci/run does)");
}

/// Runs headless Chromium on `page` with `args`; returns (stdout, stderr).
fn headless(page: &Path, profile: &Path, args: &[&str]) -> (String, String) {
    let output = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--enable-logging=stderr", "--v=0"])
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("run chromium");
    assert!(
        output.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn the_html_report_renders_in_headless_chromium_with_its_charts_and_no_console_errors() {
    let Recorded { server, log, .. } = recorded();
    let dir = tempfile::tempdir().unwrap();
    let mut history = History::open(&dir.path().join("debt.sqlite3")).unwrap();
    let thresholds = Thresholds::default();
    // Three reports a week apart make the trend.
    let mut report = None;
    for at in [NOW - 14 * DAY, NOW - 7 * DAY, NOW] {
        let computed = compute(
            &server.store,
            &log,
            &thresholds,
            at,
            RunOptions::default(),
            None,
        )
        .unwrap();
        history.record(&computed).unwrap();
        report = Some(computed);
    }
    let mut report = report.unwrap();
    report.history = history.trend("overall", "", 30).unwrap();
    history.add_group_trends(&mut report, 30).unwrap();
    assert_eq!(report.history.len(), 3);
    // A policy version and a membership removal for the over-privileged agent.
    assert_eq!(report.suggestions.len(), 2);
    let page = dir.path().join("debt.html");
    std::fs::write(&page, html::render(&report)).unwrap();

    let profile = tempfile::tempdir().unwrap();
    let (dom, log_text) = headless(&page, profile.path(), &["--dump-dom"]);
    for id in [
        "chart-trend",
        "chart-owasp",
        "chart-owners",
        "chart-owner-trends",
        "chart-team-trends",
        "ranking",
        "findings",
        "suggestions",
        "overall",
    ] {
        assert!(
            dom.contains(&format!("id=\"{id}\"")),
            "rendered page lacks #{id}"
        );
    }
    assert_eq!(
        dom.matches("<circle").count(),
        3,
        "one trend point per report"
    );
    assert!(dom.contains("<polyline class=\"trend\""));
    assert_eq!(
        dom.matches("class=\"owasp-bar\"").count(),
        10,
        "one bar per OWASP item"
    );
    assert!(
        dom.matches("class=\"owner-bar\"").count() >= 2,
        "owners alice and bob at least"
    );
    // One sparkline per owner and team, each through the three reports.
    let sparks = |class: &str| -> Vec<usize> {
        dom.split(&format!("<polyline class=\"{class}\" points=\""))
            .skip(1)
            .map(|rest| rest[..rest.find('"').unwrap()].split(' ').count())
            .collect()
    };
    assert_eq!(
        sparks("owner-spark"),
        vec![3; report.scores.owners.len().min(8)],
        "{dom}"
    );
    assert_eq!(
        sparks("team-spark"),
        vec![3; report.scores.teams.len().min(8)]
    );
    assert!(report.scores.owners.len() >= 2 && report.scores.teams.len() >= 2);
    assert!(dom.contains("Agent::\"overpriv\""));
    assert!(dom.contains("NHI10"));
    let console: Vec<&str> = log_text
        .lines()
        .filter(|line| line.contains("CONSOLE"))
        .collect();
    assert!(console.is_empty(), "console messages: {console:#?}");

    let shot = dir.path().join("debt.png");
    let (_, log_text) = headless(
        &page,
        profile.path(),
        &[
            "--window-size=1200,1500",
            "--hide-scrollbars",
            &format!("--screenshot={}", shot.display()),
        ],
    );
    let console: Vec<&str> = log_text
        .lines()
        .filter(|line| line.contains("CONSOLE"))
        .collect();
    assert!(console.is_empty(), "console messages: {console:#?}");
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "screenshot is {} bytes",
        png.len()
    );
    if let Ok(keep) = std::env::var("ARBITER_DEBT_SCREENSHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }
}
