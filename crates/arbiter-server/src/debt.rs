//! Trust debt over the API: the report as JSON and as an HTML page, computed by report runs in
//! the background, and publishing it — the scores kept in `debt.sqlite3`, each identity's
//! figures written as its `debt` attribute (so policies read them from the snapshot, and replay
//! rebuilds them from the change feed), and the optional automatic downgrade, recorded and
//! reversible like any lifecycle change — and applying a membership suggestion: the identity
//! taken out of the roles it did not use, as one ordinary identity change.
//!
//! A report over a big log takes longer than the request time limit (10M decisions: about
//! 30 s), so reading it never computes it inside the request: a *run* computes it on a thread of
//! its own, with progress (phase, done, total) anyone with `debt.read` can follow, and the
//! report it finishes is kept and served until the next run finishes. One run at a time per
//! decision log. A failed run reports its error and the last good report stays served, with its
//! age.
//!
//! Thresholds come from `debt.json` beside the decision log when it exists (every field is
//! optional), else the defaults.

use crate::admin::check;
use crate::problem::ApiError;
use crate::{now, read_json, AppState, AppStateRef};
use arbiter_core::{Control, ControlLevel, EntityRef, Identity, Lifecycle};
// Named apart from `admin::check` (the authorisation), which the OpenAPI test reads for.
use arbiter_debt::suggest::check as replay_check;
use arbiter_debt::{
    compute, html, set_figures, DebtFigures, FindingKind, History, Report, RunOptions,
    SuggestionKind, Thresholds, DAY,
};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

/// Trend points returned with a report.
const TREND_POINTS: u32 = 90;

/// Suggestions computed by a run when nobody asked for a number.
const DEFAULT_SUGGESTIONS: usize = 10;

/// Runs remembered for `GET /admin/v1/debt/runs/{id}`; older ones are forgotten.
const KEPT_RUNS: usize = 20;

/// How long a read waits for a run it started when no report exists yet, unless told.
const DEFAULT_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DebtQuery {
    /// Suggestions for at most this many over-privileged identities (default: all the run
    /// computed; 0 for none).
    suggestions: Option<usize>,
    /// The report of this run rather than the latest.
    run: Option<String>,
    /// Seconds to wait for a run started because no report exists yet.
    wait: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunRequest {
    #[serde(default)]
    suggestions: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishRequest {
    reason: String,
    #[serde(default)]
    suggestions: Option<usize>,
    /// Publish the report this finished run computed (it must be the latest good one) instead
    /// of computing one inside the request: on a big log, start a run, wait, then publish it.
    #[serde(default)]
    run: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApplyRequest {
    reason: String,
    #[serde(default)]
    force: bool,
}

/// Suggestions considered when looking for the one to apply: as many as the API reports.
const APPLY_SUGGESTIONS: usize = 100;

fn data_dir(state: &AppStateRef) -> Result<PathBuf, ApiError> {
    let audit = state.audit_or_404()?;
    Ok(audit
        .path
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(".")))
}

fn thresholds(dir: &std::path::Path) -> Result<Thresholds, String> {
    let path = dir.join("debt.json");
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .map_err(|err| format!("invalid thresholds in `{}`: {err}", path.display())),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(Thresholds::default()),
        Err(err) => Err(format!("cannot read `{}`: {err}", path.display())),
    }
}

/// Computes the report now, on the calling (blocking) thread, with the recorded trends;
/// `record` keeps its scores too, `check` replays the usage window for each suggestion.
fn compute_report(
    state: &AppState,
    dir: &std::path::Path,
    log_path: &std::path::Path,
    suggestions: usize,
    record: bool,
    check: bool,
    progress: arbiter_debt::Progress<'_>,
) -> Result<Report, String> {
    let thresholds = thresholds(dir)?;
    let log = arbiter_log::LogDb::open_read_only(log_path)
        .map_err(|err| format!("cannot open the decision log: {err}"))?;
    let options = RunOptions {
        suggestions: suggestions.min(APPLY_SUGGESTIONS),
        check,
    };
    let mut report = compute(
        state.store.as_ref(),
        &log,
        &thresholds,
        now(),
        options,
        Some(progress),
    )
    .map_err(|err| format!("computing the report: {err}"))?;
    progress("history", 0, 1);
    let history_error = |err: arbiter_debt::DebtError| format!("score history: {err}");
    let mut history = History::open(&dir.join("debt.sqlite3")).map_err(history_error)?;
    if record {
        history.record(&report).map_err(history_error)?;
    }
    report.history = history
        .trend("overall", "", TREND_POINTS)
        .map_err(history_error)?;
    history
        .add_group_trends(&mut report, TREND_POINTS)
        .map_err(history_error)?;
    progress("history", 1, 1);
    Ok(report)
}

/// Computes the report inside the request (publishing and applying, which act on it at once).
async fn report(
    state: &AppStateRef,
    suggestions: usize,
    record: bool,
    check: bool,
) -> Result<Report, ApiError> {
    let dir = data_dir(state)?;
    let log_path = state.audit_or_404()?.path.clone();
    let state2 = state.clone();
    tokio::task::spawn_blocking(move || {
        let progress = |phase: &str, done: u64, total: u64| {
            tracing::info!(phase, done, total, "trust debt");
        };
        compute_report(
            &state2,
            &dir,
            &log_path,
            suggestions,
            record,
            check,
            &progress,
        )
        .map_err(ApiError::internal)
    })
    .await
    .map_err(ApiError::internal)?
}

/// Who or what started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Trigger {
    /// `POST /admin/v1/debt/runs`.
    Api,
    /// A read that found no report at all.
    OnDemand,
}

#[derive(Debug, Clone, Default)]
struct RunProgress {
    phase: String,
    done: u64,
    total: u64,
}

#[derive(Debug)]
enum Outcome {
    Succeeded,
    Failed(String),
}

/// One computation of the report, running or finished.
#[derive(Debug)]
struct Run {
    id: String,
    trigger: Trigger,
    started_by: String,
    started_at: i64,
    suggestions: usize,
    progress: Mutex<RunProgress>,
    /// When it finished, and how; set once, under the run book's lock.
    outcome: OnceLock<(i64, Outcome)>,
    /// Flips to `true` when the run has finished, for readers waiting on it.
    finished: tokio::sync::watch::Sender<bool>,
}

impl Run {
    fn is_running(&self) -> bool {
        self.outcome.get().is_none()
    }

    /// What `GET /admin/v1/debt/runs/{id}` answers.
    fn status(&self, now: i64) -> Value {
        let progress = lock(&self.progress).clone();
        let (status, finished_at, error) = match self.outcome.get() {
            None => ("running", None, None),
            Some((at, Outcome::Succeeded)) => ("succeeded", Some(*at), None),
            Some((at, Outcome::Failed(error))) => ("failed", Some(*at), Some(error.as_str())),
        };
        let percent = (progress.total > 0).then(|| {
            (progress.done.min(progress.total) as f64 * 1000.0 / progress.total as f64).round()
                / 10.0
        });
        json!({
            "id": self.id,
            "status": status,
            "trigger": self.trigger,
            "started_by": self.started_by,
            "started_at": self.started_at,
            "finished_at": finished_at,
            "elapsed_seconds": finished_at.unwrap_or(now).saturating_sub(self.started_at),
            "suggestions": self.suggestions,
            "progress": {
                "phase": progress.phase,
                "done": progress.done,
                "total": progress.total,
                "percent": percent,
            },
            "error": error,
            "report": (status == "succeeded").then(|| format!("/admin/v1/debt?run={}", self.id)),
        })
    }

    fn location(&self) -> HeaderValue {
        HeaderValue::from_str(&format!("/admin/v1/debt/runs/{}", self.id))
            .unwrap_or_else(|_| HeaderValue::from_static("/admin/v1/debt/runs/latest"))
    }
}

/// A report a run finished, kept until the next one finishes.
#[derive(Debug)]
struct Finished {
    run: Arc<Run>,
    report: Report,
}

/// The runs over one decision log: the recent ones (newest last; at most one running) and the
/// last good report.
#[derive(Debug, Default)]
pub(crate) struct RunBook {
    runs: VecDeque<Arc<Run>>,
    latest: Option<Arc<Finished>>,
}

impl RunBook {
    fn running(&self) -> Option<Arc<Run>> {
        self.runs.iter().rev().find(|run| run.is_running()).cloned()
    }

    fn find(&self, id: &str) -> Option<Arc<Run>> {
        if id == "latest" {
            return self.runs.back().cloned();
        }
        self.runs.iter().find(|run| run.id == id).cloned()
    }
}

pub(crate) type Book = Arc<Mutex<RunBook>>;

/// A lock that survives a panic elsewhere: what it guards is only ever replaced whole.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The server's run book; runs need the decision log.
fn book(state: &AppStateRef) -> Result<Book, ApiError> {
    state.audit_or_404()?;
    Ok(state.debt_runs.clone())
}

/// Starts a run unless one is running: the run, and whether it is a new one.
fn start_run(
    state: &AppStateRef,
    book: &Book,
    suggestions: usize,
    started_by: String,
    trigger: Trigger,
) -> Result<(Arc<Run>, bool), ApiError> {
    let dir = data_dir(state)?;
    let log_path = state.audit_or_404()?.path.clone();
    let run = {
        let mut runs = lock(book);
        if let Some(running) = runs.running() {
            return Ok((running, false));
        }
        let run = Arc::new(Run {
            id: format!("dr_{}", uuid::Uuid::now_v7().simple()),
            trigger,
            started_by,
            started_at: now(),
            suggestions: suggestions.min(APPLY_SUGGESTIONS),
            progress: Mutex::new(RunProgress {
                phase: "starting".to_owned(),
                ..RunProgress::default()
            }),
            outcome: OnceLock::new(),
            finished: tokio::sync::watch::Sender::new(false),
        });
        runs.runs.push_back(run.clone());
        while runs.runs.len() > KEPT_RUNS {
            runs.runs.pop_front();
        }
        run
    };
    tracing::info!(run = %run.id, suggestions = run.suggestions, "trust-debt run started");
    let (state2, book2, run2) = (state.clone(), book.clone(), run.clone());
    // A thread of its own, not `spawn_blocking`: the runtime waits for blocking tasks when it
    // shuts down, and a run over a big log must not hold the server's shutdown for half a minute.
    let spawned = std::thread::Builder::new()
        .name("arbiter-debt-run".to_owned())
        .spawn(move || execute(&state2, &book2, &run2, &dir, &log_path));
    if let Err(err) = spawned {
        finish(
            book,
            &run,
            Err(format!("cannot start the run's thread: {err}")),
        );
    }
    Ok((run, true))
}

/// The run's thread: computes, then files the outcome. A panic fails the run rather than
/// leaving it running forever, which would block every later run.
fn execute(
    state: &AppState,
    book: &Book,
    run: &Run,
    dir: &std::path::Path,
    log_path: &std::path::Path,
) {
    let progress = |phase: &str, done: u64, total: u64| {
        {
            let mut progress = lock(&run.progress);
            progress.phase.clear();
            progress.phase.push_str(phase);
            progress.done = done;
            progress.total = total;
        }
        tracing::info!(run = %run.id, phase, done, total, "trust debt");
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        compute_report(
            state,
            dir,
            log_path,
            run.suggestions,
            false,
            true,
            &progress,
        )
    }))
    .unwrap_or_else(|_| {
        Err("the run stopped on an internal error (see the server log)".to_owned())
    });
    finish(book, run, result);
}

/// Files a run's outcome and, when it succeeded, makes its report the one served.
fn finish(book: &Book, run: &Run, result: Result<Report, String>) {
    let at = now();
    {
        let mut runs = lock(book);
        // The outcome is set under the book's lock, so a reader never sees a finished run
        // whose report is not filed yet.
        let Some(this) = runs.runs.iter().find(|kept| kept.id == run.id).cloned() else {
            return;
        };
        match result {
            Ok(report) => {
                let _ = run.outcome.set((at, Outcome::Succeeded));
                runs.latest = Some(Arc::new(Finished { run: this, report }));
                tracing::info!(run = %run.id, "trust-debt run finished");
            }
            Err(error) => {
                tracing::error!(run = %run.id, %error, "trust-debt run failed");
                let _ = run.outcome.set((at, Outcome::Failed(error)));
            }
        }
    }
    run.finished.send_replace(true);
}

/// What a read of the report gets: a finished report, or the run computing one.
enum Served {
    Report(Arc<Finished>, Option<Arc<Run>>),
    Pending(Arc<Run>),
}

/// The report a read is served: the one `query.run` names, else the last good one; when no run
/// ever finished, a run is started (or the running one joined) and waited for a little.
async fn serve_report(
    state: &AppStateRef,
    query: &DebtQuery,
    started_by: String,
) -> Result<Served, ApiError> {
    let book = book(state)?;
    let newest = |runs: &RunBook| {
        runs.runs
            .back()
            .filter(|newest| {
                runs.latest
                    .as_ref()
                    .is_none_or(|latest| latest.run.id != newest.id)
            })
            .cloned()
    };
    if let Some(id) = &query.run {
        let runs = lock(&book);
        if let Some(latest) = runs.latest.clone().filter(|latest| &latest.run.id == id) {
            return Ok(Served::Report(latest, newest(&runs)));
        }
        return match runs.find(id) {
            Some(run) if run.is_running() => Ok(Served::Pending(run)),
            Some(run) => match run.outcome.get() {
                Some((_, Outcome::Failed(error))) => {
                    Err(ApiError::conflict(format!("run `{id}` failed: {error}")))
                }
                _ => Err(ApiError::conflict(format!(
                    "the report of run `{id}` is no longer kept: a later run replaced it"
                ))),
            },
            None => Err(ApiError::not_found(format!("no trust-debt run `{id}`"))),
        };
    }
    {
        let runs = lock(&book);
        if let Some(latest) = runs.latest.clone() {
            return Ok(Served::Report(latest, newest(&runs)));
        }
    }
    let suggestions = query.suggestions.unwrap_or(DEFAULT_SUGGESTIONS);
    let (run, _) = start_run(state, &book, suggestions, started_by, Trigger::OnDemand)?;
    // Never wait past the request time limit: the answer would be a 503 instead of progress.
    let limit = state
        .config
        .request_timeout
        .saturating_sub(std::time::Duration::from_secs(1));
    let wait = query
        .wait
        .map_or(DEFAULT_WAIT, std::time::Duration::from_secs)
        .min(limit);
    let mut finished = run.finished.subscribe();
    let _ = tokio::time::timeout(wait, finished.wait_for(|done| *done)).await;
    let runs = lock(&book);
    if let Some(latest) = runs.latest.clone() {
        return Ok(Served::Report(latest, newest(&runs)));
    }
    match run.outcome.get() {
        Some((_, Outcome::Failed(error))) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "trust-debt run failed",
            format!(
                "run `{}` failed and no earlier report exists: {error}",
                run.id
            ),
        )),
        _ => Ok(Served::Pending(run)),
    }
}

/// The report with suggestions for only the first `suggestions` over-privileged identities,
/// when the run computed more; `None` when it is to be served whole.
fn trimmed(finished: &Finished, suggestions: Option<usize>) -> Option<Report> {
    let limit = suggestions.filter(|limit| *limit < finished.run.suggestions)?;
    // A run proposes for the most indebted over-privileged identities first, so the first
    // `limit` of them are exactly those a run asked for `limit` would have proposed for.
    let kept: HashSet<&str> = finished
        .report
        .ranking
        .iter()
        .filter(|debt| debt.kinds.contains(&FindingKind::OverPrivileged))
        .take(limit)
        .map(|debt| debt.identity.as_str())
        .collect();
    let mut report = finished.report.clone();
    report
        .suggestions
        .retain(|suggestion| kept.contains(suggestion.identity.as_str()));
    Some(report)
}

/// The report as JSON, with when and by which run it was computed, its age, and the newest run
/// when that is another one (running, or failed: then this is the last good report).
fn report_json(
    finished: &Finished,
    newest: Option<&Run>,
    suggestions: Option<usize>,
) -> Result<Value, ApiError> {
    let at = now();
    let mut value = match trimmed(finished, suggestions) {
        Some(report) => serde_json::to_value(&report),
        None => serde_json::to_value(&finished.report),
    }
    .map_err(ApiError::internal)?;
    let computed_at = finished
        .run
        .outcome
        .get()
        .map_or(finished.report.generated_at, |(finished_at, _)| {
            *finished_at
        });
    if let Some(object) = value.as_object_mut() {
        object.insert("computed_at".to_owned(), json!(computed_at));
        object.insert(
            "age_seconds".to_owned(),
            json!(at.saturating_sub(computed_at).max(0)),
        );
        object.insert("run".to_owned(), finished.run.status(at));
        if let Some(newest) = newest {
            object.insert("latest_run".to_owned(), newest.status(at));
        }
    }
    Ok(value)
}

/// `202 Accepted` with the run computing the report, and where to follow it.
fn pending(run: &Run) -> Response {
    let mut response = (StatusCode::ACCEPTED, Json(run.status(now()))).into_response();
    response
        .headers_mut()
        .insert(header::LOCATION, run.location());
    response
}

/// `GET /admin/v1/debt`: the last report a run finished (or the one `run` names), with its
/// run and age; `202` with the run's progress while the first one is computing.
pub(crate) async fn get(
    State(state): State<AppStateRef>,
    headers: HeaderMap,
    Query(query): Query<DebtQuery>,
) -> Result<Response, ApiError> {
    let caller = check(&state, &headers, "debt.read")?;
    match serve_report(&state, &query, caller.actor().id).await? {
        Served::Report(finished, newest) => Ok(Json(report_json(
            &finished,
            newest.as_deref(),
            query.suggestions,
        )?)
        .into_response()),
        Served::Pending(run) => Ok(pending(&run)),
    }
}

/// `GET /admin/v1/debt/report.html`: the report as a page for a browser, with when it was
/// computed; while the first run computes, a small page that shows its progress and reloads.
pub(crate) async fn page(
    State(state): State<AppStateRef>,
    headers: HeaderMap,
    Query(query): Query<DebtQuery>,
) -> Result<Response, ApiError> {
    let caller = check(&state, &headers, "debt.read")?;
    match serve_report(&state, &query, caller.actor().id).await? {
        Served::Report(finished, newest) => {
            let report = trimmed(&finished, query.suggestions);
            let report = report.as_ref().unwrap_or(&finished.report);
            let page = html::render(report);
            let banner = banner(&finished, newest.as_deref());
            // After the page's title, so it reads first without touching the report's layout.
            let page = match page.split_once("<h1>Trust debt</h1>") {
                Some((before, after)) => format!("{before}<h1>Trust debt</h1>{banner}{after}"),
                None => format!("{banner}{page}"),
            };
            Ok(Html(page).into_response())
        }
        Served::Pending(run) => {
            let mut response = (StatusCode::ACCEPTED, Html(progress_page(&run))).into_response();
            response
                .headers_mut()
                .insert(header::LOCATION, run.location());
            Ok(response)
        }
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `3 h 20 min`, `5 min`, `12 s`.
fn age(seconds: i64) -> String {
    let seconds = seconds.max(0);
    match seconds {
        0..60 => format!("{seconds} s"),
        60..3600 => format!("{} min", seconds / 60),
        3600..86_400 => format!("{} h {} min", seconds / 3600, seconds % 3600 / 60),
        _ => format!("{} d {} h", seconds / 86_400, seconds % 86_400 / 3600),
    }
}

/// The line under the page's title: which run computed it and how long ago, and what the
/// newest run is doing when it is another one.
fn banner(finished: &Finished, newest: Option<&Run>) -> String {
    let at = now();
    let computed_at = finished
        .run
        .outcome
        .get()
        .map_or(finished.report.generated_at, |(finished_at, _)| {
            *finished_at
        });
    let mut text = format!(
        r#"<p class="muted" id="run">Report of run <code>{}</code>, finished {} ago.</p>"#,
        escape(&finished.run.id),
        age(at - computed_at)
    );
    if let Some(newest) = newest {
        match newest.outcome.get() {
            None => {
                let progress = lock(&newest.progress).clone();
                text.push_str(&format!(
                    r#"<p class="muted" id="latest-run">Run <code>{}</code> is computing a newer one: {} {}/{}.</p>"#,
                    escape(&newest.id),
                    escape(&progress.phase),
                    progress.done,
                    progress.total
                ));
            }
            Some((_, Outcome::Failed(error))) => text.push_str(&format!(
                r#"<p class="sev-high" id="latest-run">The latest run, <code>{}</code>, failed: {}. This is the last good report.</p>"#,
                escape(&newest.id),
                escape(error)
            )),
            Some((_, Outcome::Succeeded)) => {}
        }
    }
    text
}

/// A page that shows a run's progress and reloads itself (no script: a `refresh` meta tag).
fn progress_page(run: &Run) -> String {
    let progress = lock(&run.progress).clone();
    let percent = if progress.total == 0 {
        String::new()
    } else {
        format!(
            " ({:.0}%)",
            progress.done.min(progress.total) as f64 * 100.0 / progress.total as f64
        )
    };
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="2">
<title>Arbiter trust debt — computing</title>
<style>body{{font-family:system-ui,sans-serif;margin:2rem auto;max-width:700px;color:#1d2430;padding:0 1rem}}</style>
</head><body>
<h1>Trust debt</h1>
<p id="progress">Computing the first report: run <code>{id}</code>, {phase} {done}/{total}{percent}, {elapsed} s so far.</p>
<p>This page reloads every 2 seconds until the report is ready.</p>
</body></html>
"#,
        id = escape(&run.id),
        phase = escape(&progress.phase),
        done = progress.done,
        total = progress.total,
        elapsed = now().saturating_sub(run.started_at),
    )
}

/// `POST /admin/v1/debt/runs`: starts computing the report in the background; `202` with the
/// run to follow. One run at a time: while one runs, `409` names it (in `run` and `Location`).
pub(crate) async fn start(
    State(state): State<AppStateRef>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let caller = check(&state, &headers, "debt.write")?;
    let empty = body
        .as_ref()
        .is_ok_and(|bytes| bytes.iter().all(u8::is_ascii_whitespace));
    let request: RunRequest = if empty {
        RunRequest::default()
    } else {
        serde_json::from_value(read_json(body, &state)?)
            .map_err(|err| ApiError::bad_request("run", err.to_string()))?
    };
    let book = book(&state)?;
    let suggestions = request.suggestions.unwrap_or(DEFAULT_SUGGESTIONS);
    let (run, started) = start_run(&state, &book, suggestions, caller.actor().id, Trigger::Api)?;
    if started {
        return Ok(pending(&run));
    }
    // Not started: the caller's options were not applied, which a 202 would hide.
    let body = json!({
        "type": "about:blank",
        "title": "conflict",
        "status": 409,
        "detail": format!("trust-debt run `{}` is already running: follow it, then start another if you need one", run.id),
        "run": run.status(now()),
    });
    let mut response = (
        StatusCode::CONFLICT,
        [(header::CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::LOCATION, run.location());
    Ok(response)
}

/// `GET /admin/v1/debt/runs/{id}`: a run's status and progress; `latest` is the newest run.
pub(crate) async fn run_status(
    State(state): State<AppStateRef>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    check(&state, &headers, "debt.read")?;
    let book = book(&state)?;
    let run = lock(&book)
        .find(&id)
        .ok_or_else(|| ApiError::not_found(format!("no trust-debt run `{id}`")))?;
    Ok(Json(run.status(now())))
}

/// `POST /admin/v1/debt/publish`: computes the report, keeps its scores, writes each active
/// non-human identity's changed figures as its `debt` attribute, and suspends those at or
/// above `downgrade_score` when it is set. Every write is an ordinary change with `reason`.
pub(crate) async fn publish(
    State(state): State<AppStateRef>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let caller = check(&state, &headers, "debt.write")?;
    let request: PublishRequest = serde_json::from_value(read_json(body, &state)?)
        .map_err(|err| ApiError::bad_request("publish", err.to_string()))?;
    if request.reason.trim().is_empty() {
        return Err(ApiError::bad_request("reason", "publishing needs a reason"));
    }
    let report = match &request.run {
        Some(id) => {
            let book = book(&state)?;
            let runs = lock(&book);
            match runs.latest.clone() {
                Some(latest) if &latest.run.id == id => latest.report.clone(),
                _ => {
                    return Err(match runs.find(id) {
                        None => ApiError::not_found(format!("no run `{id}`")),
                        Some(_) => ApiError::new(
                            axum::http::StatusCode::CONFLICT,
                            "conflict",
                            format!("run `{id}` is not the latest finished report; publish that one or start a new run"),
                        ),
                    })
                }
            }
        }
        None => report(&state, request.suggestions.unwrap_or(0), true, true).await?,
    };
    let overall = json!({"score": report.scores.overall, "findings": report.findings.len(), "at": report.generated_at});
    let state2 = state.clone();
    let reason = request.reason;
    let (published, downgraded) = tokio::task::spawn_blocking(move || {
        let actor = caller.actor();
        let inventory = state2.store.load_inventory()?;
        let mut changed = Vec::new();
        for mut identity in inventory.identities {
            let Some(figures) = report.figures.get(&identity.entity_ref().to_string()) else {
                continue;
            };
            if set_figures(&mut identity, figures) {
                changed.push(identity.entity_ref());
            }
        }
        // Stored in batches, one transaction (one fsync) each: one write per identity cost a
        // fsync each, minutes for a first publish of 100k identities.
        let mut published = 0u64;
        for batch in changed.chunks(PUBLISH_BATCH) {
            published += put_batch(&state2, batch, &report.figures, &actor, &reason)?;
        }
        let mut downgraded = Vec::new();
        if let Some(limit) = report.thresholds.downgrade_score {
            for debt in report.ranking.iter().filter(|debt| debt.score >= limit) {
                let Some(entity) = parse_entity(&debt.identity) else {
                    continue;
                };
                let kinds: Vec<&str> = debt.kinds.iter().map(|kind| kind.as_str()).collect();
                let why = format!(
                    "trust debt score {} reached the downgrade threshold {limit} ({}); undo with {} once fixed. {reason}",
                    debt.score,
                    kinds.join(", "),
                    if report.thresholds.downgrade_overlay.is_some() {
                        "a lift of the control"
                    } else {
                        "lifecycle `active`"
                    }
                );
                match &report.thresholds.downgrade_overlay {
                    Some(overlay) => {
                        // One debt downgrade at a time per identity: publishing again while it
                        // is in force places no second one.
                        let in_force = state2.store.list_controls(false)?.into_iter().any(|record| {
                            record.control.target == entity
                                && record.control.level == ControlLevel::Downgrade
                                && record.control.reason.starts_with("trust debt score")
                        });
                        if in_force {
                            continue;
                        }
                        let control = Control {
                            id: format!("ctl_{}", uuid::Uuid::now_v7().simple()),
                            target: entity.clone(),
                            level: ControlLevel::Downgrade,
                            overlay: Some(overlay.clone()),
                            safe_actions: Vec::new(),
                            reason: why.clone(),
                            placed_by: actor.id.clone(),
                            placed_at: now(),
                            expires_at: None,
                        };
                        state2.write(|snapshot| {
                            if !snapshot.policies().has_overlay(overlay) {
                                return Err(ApiError::bad_request(
                                    "downgrade_overlay",
                                    format!("no overlay `{overlay}` in the active policy set"),
                                ));
                            }
                            let seq = state2.store.place_control(&control, &actor, &why)?;
                            snapshot.inventory_mut().set_control(control.clone())?;
                            Ok(seq)
                        })?;
                        downgraded.push(json!({"identity": debt.identity, "score": debt.score,
                                               "control": control.id, "overlay": overlay}));
                    }
                    None => {
                        state2.write(|snapshot| {
                            snapshot
                                .inventory_mut()
                                .set_lifecycle(&entity, Lifecycle::Suspended)?;
                            Ok(state2
                                .store
                                .set_lifecycle(&entity, Lifecycle::Suspended, &actor, &why)?)
                        })?;
                        downgraded.push(json!({"identity": debt.identity, "score": debt.score, "lifecycle": "suspended"}));
                    }
                }
            }
        }
        Ok::<_, ApiError>((published, downgraded))
    })
    .await
    .map_err(ApiError::internal)??;
    Ok(Json(json!({
        "published": published,
        "downgraded": downgraded,
        "overall": overall,
    })))
}

/// `POST /admin/v1/debt/suggestions/{id}/apply`: applies a membership suggestion in one
/// reviewed step. The report is computed again, so only a suggestion that is still current
/// (same identity, same memberships, roles still unused) is found; it is checked by the
/// what-if replay of the usage window, and one that would change a recorded decision, or could
/// not be checked on all of them, is refused unless `force`. The identity is then read again
/// under the writer lock, refused if its memberships moved on, and written as an ordinary
/// identity change whose reason names the suggestion.
pub(crate) async fn apply(
    State(state): State<AppStateRef>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let caller = check(&state, &headers, "debt.write")?;
    // The change itself is an identity write: the caller must be allowed to make one.
    check(&state, &headers, "identities.write")?;
    let request: ApplyRequest = serde_json::from_value(read_json(body, &state)?)
        .map_err(|err| ApiError::bad_request("apply", err.to_string()))?;
    if request.reason.trim().is_empty() {
        return Err(ApiError::bad_request(
            "reason",
            "applying a suggestion needs a reason",
        ));
    }
    // Only the suggestion applied is checked by replay, not every one proposed.
    let report = report(&state, APPLY_SUGGESTIONS, false, false).await?;
    let mut suggestion = report
        .suggestions
        .iter()
        .find(|suggestion| suggestion.id == id)
        .cloned()
        .ok_or_else(|| {
            ApiError::conflict(format!(
                "no current suggestion `{id}`: compute the report again (the inventory, the policies or the usage may have changed)"
            ))
        })?;
    if suggestion.kind != SuggestionKind::Membership {
        return Err(ApiError::bad_request(
            "id",
            format!("`{id}` is a policy suggestion: upload and activate its `sources` (`arbiter debt apply` does)"),
        ));
    }
    let window_days = report.thresholds.usage_window_days;
    let since = report.generated_at - window_days * DAY;
    let log_path = state.audit_or_404()?.path.clone();
    let state2 = state.clone();
    let suggestion = tokio::task::spawn_blocking(move || {
        let log = arbiter_log::LogDb::open_read_only(&log_path).map_err(ApiError::internal)?;
        replay_check(
            std::slice::from_mut(&mut suggestion),
            state2.store.as_ref(),
            &log,
            window_days,
            since,
            None,
        )
        .map_err(ApiError::internal)?;
        Ok::<_, ApiError>(suggestion)
    })
    .await
    .map_err(ApiError::internal)??;
    if !suggestion.safe() && !request.force {
        let (changed, unreplayable) = suggestion
            .check
            .as_ref()
            .map_or((0, 0), |check| (check.changed, check.unreplayable));
        return Err(ApiError::conflict(format!(
            "suggestion `{id}` would change {changed} recorded decisions ({unreplayable} could not be decided again): review them, then apply with `force`"
        )));
    }
    let Some(base) = suggestion.membership.clone() else {
        return Err(ApiError::internal(
            "a membership suggestion without its identity",
        ));
    };
    let why = format!(
        "{} (least-privilege suggestion {id}: {})",
        request.reason.trim(),
        suggestion.removes.join(", ")
    );
    let state2 = state.clone();
    let suggestion2 = suggestion.clone();
    let why2 = why.clone();
    let applied = tokio::task::spawn_blocking(move || {
        state2.write(|snapshot| {
            let mut identity: Identity = match state2.store.get_identity(&base.identity) {
                Ok(identity) => identity,
                Err(arbiter_store::StoreError::NotFound { .. }) => {
                    return Err(ApiError::conflict(format!(
                        "{} no longer exists",
                        base.identity
                    )))
                }
                Err(err) => return Err(err.into()),
            };
            suggestion2
                .apply_to(&mut identity)
                .map_err(ApiError::conflict)?;
            snapshot
                .inventory_mut()
                .upsert_identity(&identity, state2.schema.as_deref())?;
            state2
                .store
                .put_identity(&identity, &caller.actor(), &why2)?;
            Ok(identity)
        })
    })
    .await
    .map_err(ApiError::internal)??;
    Ok(Json(json!({
        "suggestion": suggestion,
        "applied": {
            "identity": applied.entity_ref().to_string(),
            "member_of": applied.member_of,
            "reason": why,
        },
    })))
}

/// Writes `figures` on the identity as it is now: read again under the writer lock, so that a
/// change made since the report was computed is kept. Whether anything was written.
/// Identities stored per transaction when publishing.
const PUBLISH_BATCH: usize = 1_000;

/// Publishes the figures of `entities` in one write: each identity is read again under the
/// writer lock (so a change made since the report is kept), given its figures, checked by the
/// snapshot, then all are stored in one transaction and published together, or none is.
/// Returns how many changed.
fn put_batch(
    state: &AppStateRef,
    entities: &[EntityRef],
    figures: &std::collections::BTreeMap<String, DebtFigures>,
    actor: &arbiter_store::Actor,
    reason: &str,
) -> Result<u64, ApiError> {
    state.write(|snapshot| {
        let mut identities = Vec::with_capacity(entities.len());
        for entity in entities {
            let Some(figures) = figures.get(&entity.to_string()) else {
                continue;
            };
            let mut identity: Identity = match state.store.get_identity(entity) {
                Ok(identity) => identity,
                // Deleted since: nothing to publish on.
                Err(arbiter_store::StoreError::NotFound { .. }) => continue,
                Err(err) => return Err(err.into()),
            };
            if set_figures(&mut identity, figures) {
                check_figures(state, snapshot, &identity)?;
                identities.push(identity);
            }
        }
        state.store.put_identities(&identities, actor, reason)?;
        Ok(identities.len() as u64)
    })
}

/// Puts `identity`, with its figures, into the snapshot being published; the schema may refuse.
fn check_figures(
    state: &AppStateRef,
    snapshot: &mut arbiter_engine::Snapshot,
    identity: &Identity,
) -> Result<(), ApiError> {
    snapshot
        .inventory_mut()
        .upsert_identity(identity, state.schema.as_deref())
        .map_err(|err| {
            ApiError::new(
                axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                "rejected",
                format!(
                    "`{}`: {err}; with a schema, declare `debt?: {{score: Long, findings: Long, unrotated_days: Long, dormant_days: Long, unused_grants: Long, orphaned: Bool, computed_at: Long}}` on every non-human entity type (see docs/debt.md)",
                    identity.entity_ref()
                ),
            )
        })
}

/// `Type::"id"` back into a reference.
fn parse_entity(text: &str) -> Option<arbiter_core::EntityRef> {
    let (kind, rest) = text.split_once("::")?;
    let id: String = serde_json::from_str(rest).ok()?;
    Some(arbiter_core::EntityRef::new(kind, id))
}
