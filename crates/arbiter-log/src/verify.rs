//! Verification: recompute every leaf from what is stored, rebuild the tree, and check it
//! against every signed checkpoint, the log's own and any kept elsewhere.

use crate::checkpoint::Checkpoint;
use crate::db::{LogDb, Row};
use crate::merkle::{inclusion_proof, verify_inclusion, Frontier, Hash};
use crate::postings;
use crate::record::{leaf_of, Columns};
use crate::LogError;
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Most problems listed; past this only their number is kept.
const MAX_PROBLEMS: usize = 100;

/// What to verify against.
pub struct VerifyOptions<'a> {
    /// The log's public key.
    pub public_key: VerifyingKey,
    /// Checkpoints kept outside the database (the witness file, exported copies). Any one of
    /// them that is newer than the database reveals a rollback or truncation.
    pub external: Vec<Checkpoint>,
    /// Recompute leaves of entries from this seq (earlier leaves are taken as stored, still
    /// bound by the checkpoints).
    pub from: u64,
    /// … up to this seq (inclusive); `None` for the end.
    pub to: Option<u64>,
    /// Called every 100k entries with (done, total).
    pub progress: Option<&'a dyn Fn(u64, u64)>,
}

/// One thing found wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// The entry at fault, when one can be named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// What is wrong.
    pub message: String,
}

/// The outcome of a verification.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    /// Entries read.
    pub entries: u64,
    /// Entries whose leaves were recomputed.
    pub rehashed: u64,
    /// Entries whose bodies retention dropped (their leaves are still checked by the roots).
    pub pruned: u64,
    /// Checkpoints whose signatures and roots were checked.
    pub checkpoints_checked: usize,
    /// The newest checkpoint's size and root.
    pub latest: Option<Checkpoint>,
    /// Everything wrong, first problems first (at most 100 listed).
    pub problems: Vec<Problem>,
    /// How many problems there were in all.
    pub problem_count: usize,
}

impl VerifyReport {
    /// Whether the log verified.
    pub fn ok(&self) -> bool {
        self.problem_count == 0
    }

    fn problem(&mut self, seq: Option<u64>, message: String) {
        self.problem_count += 1;
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(Problem { seq, message });
        }
    }
}

/// Verifies the log in `db`.
pub fn verify(db: &LogDb, options: &VerifyOptions<'_>) -> Result<VerifyReport, LogError> {
    let mut report = VerifyReport::default();
    // Every validly signed checkpoint, by size. A bad signature is itself a finding.
    let mut by_size: BTreeMap<u64, Vec<(Hash, String)>> = BTreeMap::new();
    let own = db.checkpoints()?;
    report.latest = db.latest_checkpoint()?;
    let sources = own.iter().map(|checkpoint| (checkpoint, "the log")).chain(
        options
            .external
            .iter()
            .map(|checkpoint| (checkpoint, "a kept copy")),
    );
    for (checkpoint, source) in sources {
        let described = format!(
            "checkpoint of {} entries signed at {} ({source})",
            checkpoint.size, checkpoint.at
        );
        match checkpoint.root_hash() {
            Some(root) if checkpoint.verify(&options.public_key) => {
                by_size
                    .entry(checkpoint.size)
                    .or_default()
                    .push((root, described));
            }
            _ => report.problem(
                None,
                format!("{described}: the signature does not verify with this key"),
            ),
        }
    }
    if by_size.is_empty() && db.len()? > 0 {
        report.problem(
            None,
            "no validly signed checkpoint covers the entries".into(),
        );
    }

    let total = db.len()?;
    let pruned_through = db.pruned_through()?;
    let to = options.to.unwrap_or(u64::MAX);
    let mut frontier = Frontier::new();
    let mut last_checked = 0u64;
    // The search index is derived data outside the tree: each full block in the range is
    // rebuilt from the entries and compared with what is stored, so that an index edited to
    // hide entries from searches is reported too.
    let index = postings::IndexState::read(db.conn())?;
    let mut rebuilt = index.map(|index| postings::BlockTerms::new(index.block));
    let mut block_problems = Vec::new();
    db.scan_raw(1, u64::MAX, |seq, row| {
        let row = match row {
            Ok(row) => row,
            Err(error) => {
                report.problem(Some(seq), format!("entry {seq} cannot be read: {error}"));
                Row {
                    seq,
                    columns: Columns::default(),
                    body: Vec::new(),
                    leaf: Vec::new(),
                }
            }
        };
        let expected = frontier.size() + 1;
        if row.seq != expected {
            report.problem(
                Some(expected),
                format!(
                    "entries {expected} to {} are missing (deleted or truncated)",
                    row.seq - 1
                ),
            );
            // Later roots cannot match; keep reading to report edits that are local.
            while frontier.size() + 1 < row.seq {
                frontier.push([0u8; 32]);
            }
        }
        let stored: Option<Hash> = row.leaf.clone().try_into().ok();
        let leaf = if row.body.is_empty() && row.columns.kind == "decision" && row.seq <= pruned_through {
            // Pruned by a retention run the log records: only the leaf is left to check,
            // and the checkpoints still bind it.
            report.pruned += 1;
            stored.unwrap_or([0u8; 32])
        } else if row.seq >= options.from && row.seq <= to {
            report.rehashed += 1;
            let computed = row.computed_leaf();
            if stored != Some(computed) {
                report.problem(
                    Some(row.seq),
                    format!(
                        "entry {}: its stored content does not match its hash (edited, or moved from another position)",
                        row.seq
                    ),
                );
            }
            computed
        } else {
            stored.unwrap_or([0u8; 32])
        };
        frontier.push(leaf);
        report.entries += 1;
        if let (Some(index), Some(rebuilt)) = (index, rebuilt.as_mut()) {
            if row.seq <= index.sealed_through {
                if let Some(block) = rebuilt.add(row.seq, &row.columns) {
                    let (first, last) = (block * index.block + 1, (block + 1) * index.block);
                    let expected = rebuilt.take();
                    if first >= options.from && last <= to {
                        match postings::stored(db.conn(), block) {
                            Ok(stored) if stored == expected => {}
                            Ok(_) => block_problems.push((first, last, None)),
                            Err(error) => block_problems.push((first, last, Some(error))),
                        }
                    }
                }
            }
        }
        if let Some(heads) = by_size.get(&frontier.size()) {
            let root = frontier.root();
            for (signed_root, described) in heads {
                report.checkpoints_checked += 1;
                if *signed_root != root {
                    report.problem(
                        None,
                        format!(
                            "entries {} to {} do not match the {described}",
                            last_checked + 1,
                            frontier.size()
                        ),
                    );
                }
            }
            last_checked = frontier.size();
        }
        if let Some(progress) = options.progress {
            if report.entries % 100_000 == 0 {
                progress(report.entries, total);
            }
        }
        Ok(())
    })?;
    for (first, last, error) in block_problems {
        report.problem(
            None,
            match error {
                None => format!("the search index of entries {first} to {last} does not match them (edited): searches may miss entries; the entries themselves are checked above"),
                Some(error) => format!("the search index of entries {first} to {last} cannot be read: {error}"),
            },
        );
    }
    let size = frontier.size();
    for (checkpoint_size, heads) in by_size.range(size + 1..) {
        for (_, described) in heads {
            report.problem(
                None,
                format!(
                    "the log holds {size} entries but the {described} covers {checkpoint_size}: entries were removed or the database was restored from an older copy"
                ),
            );
        }
    }
    if size > last_checked && size > 0 {
        report.problem(
            Some(last_checked + 1),
            format!(
                "entries {} to {size} are covered by no signed checkpoint (appended outside the writer)",
                last_checked + 1
            ),
        );
    }
    Ok(report)
}

/// Proof that one entry is in the log: the entry, its position, and the audit path to the root
/// of a signed checkpoint. Checkable by a third party with the public key alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionProof {
    /// The entry's position.
    pub seq: u64,
    /// The entry's JSON, byte for byte as stored and hashed.
    pub body: String,
    /// Its search columns, as hashed (see `record::leaf_of`).
    pub columns: Columns,
    /// The leaf hash, hex.
    pub leaf: String,
    /// The audit path, leaf to root, hex.
    pub path: Vec<String>,
    /// The checkpoint the path leads to.
    pub checkpoint: Checkpoint,
}

/// Builds the inclusion proof of the entry at `seq` against the latest checkpoint.
pub fn prove(db: &LogDb, seq: u64) -> Result<InclusionProof, LogError> {
    let checkpoint = db
        .latest_checkpoint()?
        .ok_or_else(|| LogError::Corrupt("the log has no checkpoint yet".into()))?;
    let row = db
        .row(seq)?
        .ok_or_else(|| LogError::Missing(format!("entry {seq}")))?;
    if seq > checkpoint.size {
        return Err(LogError::Corrupt(format!(
            "entry {seq} is newer than the latest checkpoint"
        )));
    }
    let leaves = db.leaves(checkpoint.size)?;
    let index = (seq - 1) as usize;
    let path = inclusion_proof(&leaves, index)
        .ok_or_else(|| LogError::Corrupt(format!("entry {seq} is not among the leaves")))?;
    Ok(InclusionProof {
        seq,
        body: String::from_utf8(row.body.clone())
            .map_err(|_| LogError::Corrupt(format!("entry {seq} is not UTF-8")))?,
        columns: row.columns.clone(),
        leaf: hex::encode(row.computed_leaf()),
        path: path.iter().map(hex::encode).collect(),
        checkpoint,
    })
}

impl InclusionProof {
    /// Checks the proof with the log's public key: the checkpoint's signature, the leaf
    /// recomputed from the entry, and the path from the leaf to the signed root.
    pub fn check(&self, key: &VerifyingKey) -> Result<(), String> {
        if !self.checkpoint.verify(key) {
            return Err("the checkpoint's signature does not verify with this key".into());
        }
        let leaf = leaf_of(self.seq, &self.columns, self.body.as_bytes());
        if hex::encode(leaf) != self.leaf {
            return Err("the entry does not hash to the proof's leaf".into());
        }
        let path = self
            .path
            .iter()
            .map(|hash| {
                hex::decode(hash)
                    .ok()
                    .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
                    .ok_or_else(|| format!("path element `{hash}` is not a 32-byte hex hash"))
            })
            .collect::<Result<Vec<Hash>, String>>()?;
        let root = self
            .checkpoint
            .root_hash()
            .ok_or("the checkpoint's root is not a 32-byte hex hash")?;
        if !verify_inclusion(&leaf, self.seq - 1, self.checkpoint.size, &path, &root) {
            return Err("the audit path does not lead to the checkpoint's root".into());
        }
        Ok(())
    }
}
