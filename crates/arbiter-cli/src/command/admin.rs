//! What `identities`, `policies`, `keys` and `changes` share: the connection options, a blocking
//! client for the administration API, the server's RFC 9457 problems as errors, and aligned
//! tables for people.
//!
//! Exit codes, the same for every command that speaks to a server: 0 done; 1 a validation found
//! errors (`policies validate`); 2 the server refused (4xx or 5xx) or the input was unusable;
//! 3 the server could not be reached.
//!
//! The API key is a secret: it is sent as a bearer token, kept out of `Debug`, hidden from
//! `--help`, and never printed, even in errors.

use anyhow::{anyhow, bail, Context, Result};
use reqwest::blocking::Client;
use reqwest::header::HeaderValue;
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use serde_json::Value;
use std::fmt;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

/// The header in which routes whose body has no `reason` take one.
const REASON_HEADER: &str = "x-arbiter-reason";

/// How to reach the server; global to every command that speaks to one.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ConnectionArgs {
    /// Base URL of `arbiter serve`.
    #[arg(
        long,
        env = "ARBITER_SERVER",
        default_value = "http://127.0.0.1:8181",
        value_name = "URL",
        global = true
    )]
    server: String,
    /// API key, sent as a bearer token. Prefer the environment variable: arguments are visible
    /// to other users in the process list.
    #[arg(
        long,
        env = "ARBITER_API_KEY",
        hide_env_values = true,
        value_name = "KEY",
        value_parser = parse_api_key,
        global = true
    )]
    api_key: Option<ApiKey>,
    /// Print the API's JSON, one document, instead of text for people.
    #[arg(long, global = true)]
    pub(crate) json: bool,
}

/// An API key. Its `Debug` is redacted so that it cannot leak through `{:?}` of the arguments.
#[derive(Clone)]
pub(crate) struct ApiKey(String);

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// Takes any text: a parse error here would make clap quote the key back. `Api::new` checks it.
fn parse_api_key(text: &str) -> Result<ApiKey, std::convert::Infallible> {
    Ok(ApiKey(text.trim().to_owned()))
}

/// Why a change is made; recorded in the change feed. Never blank.
#[derive(Debug, Clone)]
pub(crate) struct Reason(String);

impl Reason {
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

/// A `value_parser` for `--reason`: the change feed records who, when, what and why, so a blank
/// why is refused before anything is sent.
pub(crate) fn parse_reason(text: &str) -> Result<Reason, String> {
    if text.trim().is_empty() {
        return Err("a reason must say why; it is recorded in the change feed".to_owned());
    }
    Ok(Reason(text.trim().to_owned()))
}

/// What the server answered instead of a success.
#[derive(Debug)]
pub(crate) enum RemoteError {
    /// A 4xx or 5xx, with the server's problem details.
    Refused(Problem),
    /// Nothing answered: connection refused, name not resolved, timed out.
    Unreachable { server: String, cause: String },
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RemoteError::Refused(problem) => problem.fmt(f),
            RemoteError::Unreachable { server, cause } => {
                write!(f, "cannot reach the server at {server}: {cause}")
            }
        }
    }
}

impl std::error::Error for RemoteError {}

/// An RFC 9457 problem, as the server sends it.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Problem {
    #[serde(default)]
    pub(crate) status: u16,
    #[serde(default)]
    pub(crate) title: String,
    #[serde(default)]
    pub(crate) detail: String,
    #[serde(default)]
    pub(crate) field: Option<String>,
    /// Machine-readable errors, e.g. policy errors with file, line and column.
    #[serde(default)]
    pub(crate) errors: Option<serde_json::Value>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", clean(&self.title), clean(&self.detail))?;
        if let Some(field) = &self.field {
            write!(f, " (field `{}`)", clean(field))?;
        }
        Ok(())
    }
}

/// One error in a policy source, as `policies/validate` lists them and as a rejected upload or
/// activation carries them (in the problem's `errors` member).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct SourceError {
    pub(crate) source: String,
    pub(crate) line: Option<u64>,
    pub(crate) column: Option<u64>,
    pub(crate) message: String,
}

impl SourceError {
    /// `file:line:column: message`, the way compilers say it, with `file` as `rename` maps it.
    pub(crate) fn render(&self, rename: impl Fn(&str) -> String) -> String {
        let mut location = rename(&self.source);
        for number in [self.line, self.column]
            .into_iter()
            .map_while(|number| number)
        {
            location.push_str(&format!(":{number}"));
        }
        format!("{location}: {}", clean(&self.message))
    }
}

impl Problem {
    /// The policy errors a 422 carries in its `errors` member, if that is what it carries.
    pub(crate) fn source_errors(&self) -> Option<Vec<SourceError>> {
        if self.status != StatusCode::UNPROCESSABLE_ENTITY.as_u16() {
            return None;
        }
        serde_json::from_value::<Vec<SourceError>>(self.errors.clone()?)
            .ok()
            .filter(|errors| !errors.is_empty())
    }
}

/// A client for one server's administration API.
pub(crate) struct Api {
    base: Url,
    key: Option<ApiKey>,
    client: Client,
}

impl Api {
    pub(crate) fn new(connection: &ConnectionArgs) -> Result<Self> {
        let base = Url::parse(connection.server.trim())
            .with_context(|| format!("invalid server URL `{}`", connection.server))?;
        match base.scheme() {
            "http" => {}
            "https" => bail!(
                "`https://` needs TLS, which this build of arbiter does not include: \
                 use `http://` on loopback, or a TLS-terminating proxy"
            ),
            other => bail!("invalid server URL: unsupported scheme `{other}`, use `http://`"),
        }
        if let Some(ApiKey(key)) = &connection.api_key {
            // Neither message quotes the key.
            if key.is_empty() {
                bail!("the API key is empty");
            }
            if HeaderValue::from_str(&format!("Bearer {key}")).is_err() {
                bail!("the API key holds characters an HTTP header cannot carry");
            }
        }
        let client = Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            // The API never redirects; following one could carry the key to another host.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("arbiter/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot set up the HTTP client")?;
        Ok(Self {
            base,
            key: connection.api_key.clone(),
            client,
        })
    }

    /// `<server>/admin/v1/<segments…>`, each segment percent-encoded (ids may hold `/`).
    pub(crate) fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        url.set_query(None);
        url.set_fragment(None);
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(["admin", "v1"]).extend(segments);
        }
        url
    }

    pub(crate) fn get(&self, url: Url) -> Result<Value> {
        self.send(Method::GET, url, None, None)
    }

    /// POSTs a JSON body.
    pub(crate) fn post(&self, url: Url, body: &Value, reason: Option<&Reason>) -> Result<Value> {
        self.send(Method::POST, url, Some(body.to_string()), reason)
    }

    /// POSTs a JSON text as it is, so that the server's strict parser sees exactly what the
    /// operator wrote (duplicate keys included).
    pub(crate) fn post_text(
        &self,
        url: Url,
        body: String,
        reason: Option<&Reason>,
    ) -> Result<Value> {
        self.send(Method::POST, url, Some(body), reason)
    }

    pub(crate) fn delete(&self, url: Url, reason: &Reason) -> Result<Value> {
        self.send(Method::DELETE, url, None, Some(reason))
    }

    /// Sends a request. The reason, when given, travels in the `x-arbiter-reason` header: the
    /// routes that read it there have bodies without a `reason` field, or no body at all.
    fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<String>,
        reason: Option<&Reason>,
    ) -> Result<Value> {
        let mut request = self.client.request(method, url);
        if let Some(key) = &self.key {
            request = request.bearer_auth(&key.0);
        }
        if let Some(reason) = reason {
            request = request.header(REASON_HEADER, reason_header(reason)?);
        }
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        let response = request.send().map_err(|err| self.transport_error(&err))?;
        let status = response.status();
        let text = response.text().map_err(|err| self.transport_error(&err))?;
        if status.is_success() {
            return serde_json::from_str(&text).with_context(|| {
                format!(
                    "the server at {} answered {status} with something other than JSON; \
                     is it Arbiter?",
                    self.server()
                )
            });
        }
        let problem = match serde_json::from_str::<Problem>(&text) {
            Ok(problem) if !problem.title.is_empty() => Problem {
                status: status.as_u16(),
                ..problem
            },
            // Not a problem document: a proxy, or not Arbiter at all.
            _ => Problem {
                status: status.as_u16(),
                title: format!("HTTP {}", status.as_u16()),
                detail: status
                    .canonical_reason()
                    .unwrap_or("no problem details in the answer")
                    .to_lowercase(),
                field: None,
                errors: None,
            },
        };
        Err(RemoteError::Refused(problem).into())
    }

    fn transport_error(&self, err: &reqwest::Error) -> anyhow::Error {
        // The innermost cause says what went wrong ("Connection refused"); the outer layers only
        // repeat the URL.
        let mut cause: &dyn std::error::Error = err;
        while let Some(source) = cause.source() {
            cause = source;
        }
        let cause = cause.to_string();
        if err.is_connect() || err.is_timeout() {
            RemoteError::Unreachable {
                server: self.server(),
                cause,
            }
            .into()
        } else {
            anyhow!("talking to the server at {}: {cause}", self.server())
        }
    }

    /// The server's URL for messages, without any credentials it may have been given.
    fn server(&self) -> String {
        let mut shown = self.base.clone();
        let _ = shown.set_password(None);
        let _ = shown.set_username("");
        shown.to_string()
    }
}

/// The reason as a header value. The server reads the header as ASCII and takes anything else
/// as no reason at all, so other text is refused here rather than silently dropped there.
fn reason_header(reason: &Reason) -> Result<HeaderValue> {
    let text = reason.as_str();
    if !text
        .bytes()
        .all(|byte| byte == b' ' || byte.is_ascii_graphic())
    {
        bail!(
            "this change carries its reason in an HTTP header, which takes printable ASCII only: \
             rephrase `--reason`"
        );
    }
    HeaderValue::from_str(text).context("the reason cannot be sent as a header")
}

/// Maps a command's result to the exit code, printing what the server said. Errors that are not
/// the server's go back to `main`, which prints them and exits with 2.
pub(crate) fn exit_code(result: Result<ExitCode>) -> Result<ExitCode> {
    let err = match result {
        Ok(code) => return Ok(code),
        Err(err) => err,
    };
    match err.downcast_ref::<RemoteError>() {
        Some(remote @ RemoteError::Refused(problem)) => {
            eprintln!("error: {remote}");
            if problem.status == StatusCode::UNAUTHORIZED.as_u16() {
                eprintln!("hint: give a valid API key with --api-key or ARBITER_API_KEY");
            }
            Ok(ExitCode::from(2))
        }
        Some(remote @ RemoteError::Unreachable { .. }) => {
            eprintln!("error: {remote}");
            eprintln!("hint: is `arbiter serve` running there? set --server or ARBITER_SERVER");
            Ok(ExitCode::from(3))
        }
        None => Err(err),
    }
}

/// Writes to standard output; a closed pipe (`arbiter … | head`) is not an error.
pub(crate) fn emit(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(err).context("cannot write to standard output")
        }
        _ => Ok(()),
    }
}

/// Prints the API's JSON as one pretty document.
pub(crate) fn emit_json(value: &Value) -> Result<()> {
    emit(&format!("{}\n", serde_json::to_string_pretty(value)?))
}

/// Reads a JSON answer into the shape a table needs; fields the table does not show are ignored,
/// so a newer server does not break an older CLI.
pub(crate) fn view<T: serde::de::DeserializeOwned>(value: Value) -> Result<T> {
    serde_json::from_value(value).context("the server's answer does not have the expected shape")
}

/// Columns aligned with two spaces, for people. Cells are cleaned of control characters, so
/// stored text cannot move the cursor or recolour the terminal.
pub(crate) struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new(header: &[&'static str]) -> Self {
        Self {
            header: header.to_vec(),
            rows: Vec::new(),
        }
    }

    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(
            cells
                .iter()
                .map(|cell| {
                    if cell.is_empty() {
                        "-".to_owned()
                    } else {
                        clean(cell)
                    }
                })
                .collect(),
        );
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub(crate) fn render(&self) -> String {
        let header: Vec<String> = self
            .header
            .iter()
            .map(|title| (*title).to_owned())
            .collect();
        let mut widths: Vec<usize> = header.iter().map(|title| title.chars().count()).collect();
        for row in &self.rows {
            for (column_idx, cell) in row.iter().enumerate() {
                let width = cell.chars().count();
                match widths.get_mut(column_idx) {
                    Some(max) => *max = (*max).max(width),
                    None => widths.push(width),
                }
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (column_idx, cell) in row.iter().enumerate() {
                if column_idx + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    let width = widths.get(column_idx).copied().unwrap_or(0);
                    line.push_str(&format!("{cell:<width$}  "));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Labelled facts about one object, one a line, values aligned and cleaned; `-` when empty.
/// The value at a JSON pointer as plain text: strings without quotes, nothing for null or absent.
pub(crate) fn text_at(value: &Value, pointer: &str) -> String {
    match value.pointer(pointer) {
        Some(Value::String(text)) => text.clone(),
        None | Some(Value::Null) => String::new(),
        Some(other) => other.to_string(),
    }
}

pub(crate) fn facts(rows: &[(&str, String)]) -> String {
    let width = rows
        .iter()
        .map(|(label, _)| label.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (label, value) in rows {
        let value = if value.is_empty() {
            "-".to_owned()
        } else {
            clean(value)
        };
        out.push_str(&format!("  {label:<width$}  {value}\n"));
    }
    out
}

/// Text from the server made safe for a terminal: control characters become spaces.
pub(crate) fn clean(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Seconds since the Unix epoch as RFC 3339 UTC, e.g. `2026-01-01T00:00:00Z`.
pub(crate) fn format_time(seconds: i64) -> String {
    let days = seconds.div_euclid(86_400);
    let second_of_day = seconds.rem_euclid(86_400);
    // Howard Hinnant's `civil_from_days`: proleptic Gregorian calendar, any i64 day count.
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc_3339_utc() {
        for (seconds, expect) in [
            (0, "1970-01-01T00:00:00Z"),
            (1_767_225_600, "2026-01-01T00:00:00Z"),
            (951_827_696, "2000-02-29T12:34:56Z"),
            (-1, "1969-12-31T23:59:59Z"),
        ] {
            assert_eq!(format_time(seconds), expect);
        }
    }

    #[test]
    fn tables_align_columns_and_clean_cells() {
        let mut table = Table::new(&["ID", "NAME"]);
        table.row(vec!["a".to_owned(), "first\x1b[31m".to_owned()]);
        table.row(vec!["longer-id".to_owned(), String::new()]);
        assert_eq!(
            table.render(),
            "ID         NAME\na          first [31m\nlonger-id  -\n"
        );
    }

    #[test]
    fn source_errors_read_like_a_compiler() {
        let error = SourceError {
            source: "agents.cedar".to_owned(),
            line: Some(3),
            column: Some(7),
            message: "unexpected token".to_owned(),
        };
        assert_eq!(
            error.render(|name| format!("policies/{name}")),
            "policies/agents.cedar:3:7: unexpected token"
        );
        let error = SourceError {
            line: None,
            column: None,
            ..error
        };
        assert_eq!(
            error.render(str::to_owned),
            "agents.cedar: unexpected token"
        );
    }

    #[test]
    fn the_api_key_never_shows_in_debug() {
        let key = parse_api_key("arb_secret").unwrap();
        assert!(!format!("{key:?}").contains("secret"));
    }

    #[test]
    fn header_reasons_are_printable_ascii() {
        assert!(reason_header(&parse_reason("key leaked in CI log #42").unwrap()).is_ok());
        assert!(reason_header(&parse_reason("gone \u{2014} really").unwrap()).is_err());
        assert!(reason_header(&parse_reason("two\nlines").unwrap()).is_err());
    }

    #[test]
    fn blank_reasons_are_refused() {
        assert!(parse_reason("  ").is_err());
        assert_eq!(
            parse_reason(" leaked token ").unwrap().as_str(),
            "leaked token"
        );
    }
}
