//! Shipping the decision log to a SIEM: a file, stdout, or an HTTP webhook.
//!
//! Sinks follow the log, they are not in the decision path: each reads entries only after they
//! are committed, ships them in order, and then saves how far it got in a cursor file, so a
//! decision never waits for a sink and a slow or failing sink loses nothing: it lags, retries,
//! and catches up. Delivery is at least once (after a crash between shipping and saving the
//! cursor, the last batch is shipped again); every entry carries its `seq` to deduplicate.

use arbiter_log::{EntryQuery, LogDb, StoredEntry};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// Where entries go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkTarget {
    /// Appended to a file as JSON Lines, fsynced per batch.
    File(PathBuf),
    /// Written to standard output as JSON Lines.
    Stdout,
    /// POSTed as a JSON array, one request per batch; any non-2xx is retried. Plain HTTP only.
    Webhook(String),
}

impl FromStr for SinkTarget {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text == "stdout" {
            return Ok(Self::Stdout);
        }
        if let Some(path) = text.strip_prefix("file:") {
            return Ok(Self::File(PathBuf::from(path)));
        }
        if text.starts_with("http://") {
            return Ok(Self::Webhook(text.to_owned()));
        }
        if text.starts_with("https://") {
            // The server's HTTP client is built without TLS for now.
            return Err(format!(
                "`{text}`: https webhooks are not supported yet; post to a local forwarder over http"
            ));
        }
        Err(format!(
            "`{text}`: a sink is `stdout`, `file:<path>` or an http:// webhook URL"
        ))
    }
}

impl SinkTarget {
    /// A name for the cursor file and logs.
    fn name(&self) -> String {
        let raw = match self {
            Self::File(path) => format!("file-{}", path.display()),
            Self::Stdout => "stdout".to_owned(),
            Self::Webhook(url) => format!("webhook-{url}"),
        };
        raw.chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect()
    }
}

/// Follows the log at `log_path` forever, shipping to `target`; the cursor lives in
/// `cursor_dir`.
pub async fn follow(target: SinkTarget, log_path: PathBuf, cursor_dir: PathBuf) {
    let name = target.name();
    let cursor_path = cursor_dir.join(format!("{name}.cursor"));
    let client = reqwest::Client::new();
    let mut after = read_cursor(&cursor_path);
    let mut backoff = Duration::from_millis(200);
    loop {
        let path = log_path.clone();
        let batch = tokio::task::spawn_blocking(move || {
            LogDb::open_read_only(&path).and_then(|db| {
                db.search(&EntryQuery {
                    after: Some(after),
                    limit: Some(1000),
                    ..EntryQuery::default()
                })
            })
        })
        .await;
        let entries = match batch {
            Ok(Ok(entries)) => entries,
            Ok(Err(error)) => {
                tracing::warn!(sink = %name, %error, "cannot read the decision log");
                tokio::time::sleep(backoff).await;
                continue;
            }
            Err(error) => {
                tracing::warn!(sink = %name, %error, "sink reader failed");
                tokio::time::sleep(backoff).await;
                continue;
            }
        };
        let Some(last) = entries.last().map(|entry| entry.seq) else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        match ship(&target, &client, &entries).await {
            Ok(()) => {
                after = last;
                backoff = Duration::from_millis(200);
                if let Err(error) = write_cursor(&cursor_path, after) {
                    tracing::warn!(sink = %name, %error, "cannot save the sink cursor");
                }
                metrics::counter!("arbiter_log_sink_entries_total", "sink" => name.clone())
                    .increment(entries.len() as u64);
            }
            Err(error) => {
                metrics::counter!("arbiter_log_sink_failures_total", "sink" => name.clone())
                    .increment(1);
                tracing::warn!(sink = %name, %error, retry_in = ?backoff, "sink failed; will retry");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

async fn ship(
    target: &SinkTarget,
    client: &reqwest::Client,
    entries: &[StoredEntry],
) -> Result<(), String> {
    match target {
        SinkTarget::Stdout => {
            let mut text = String::new();
            for entry in entries {
                text.push_str(&serde_json::to_string(entry).map_err(|err| err.to_string())?);
                text.push('\n');
            }
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())
                .and_then(|()| out.flush())
                .map_err(|err| err.to_string())
        }
        SinkTarget::File(path) => {
            let path = path.clone();
            let mut text = Vec::new();
            for entry in entries {
                serde_json::to_writer(&mut text, entry).map_err(|err| err.to_string())?;
                text.push(b'\n');
            }
            tokio::task::spawn_blocking(move || append_synced(&path, &text))
                .await
                .map_err(|err| err.to_string())?
                .map_err(|err| err.to_string())
        }
        SinkTarget::Webhook(url) => {
            let response = client
                .post(url)
                .json(entries)
                .timeout(Duration::from_secs(10))
                .send()
                .await
                .map_err(|err| err.to_string())?;
            if response.status().is_success() {
                Ok(())
            } else {
                Err(format!("webhook answered {}", response.status()))
            }
        }
    }
}

fn append_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_data()
}

fn read_cursor(path: &Path) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(0)
}

/// Saves the cursor atomically: write a temporary file, fsync it, rename it over the old one.
fn write_cursor(path: &Path, seq: u64) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let temporary = path.with_extension("cursor.tmp");
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(seq.to_string().as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_and_bad_ones_say_why() {
        assert_eq!("stdout".parse(), Ok(SinkTarget::Stdout));
        assert_eq!(
            "file:/var/log/arbiter.jsonl".parse(),
            Ok(SinkTarget::File("/var/log/arbiter.jsonl".into()))
        );
        assert_eq!(
            "http://siem:8088/ingest".parse(),
            Ok(SinkTarget::Webhook("http://siem:8088/ingest".into()))
        );
        assert!("ftp://x"
            .parse::<SinkTarget>()
            .unwrap_err()
            .contains("webhook"));
    }
}
