//! Reading decisions for usage analysis from the search columns only: no entry body is parsed,
//! so a scan of millions of decisions costs a table walk, not millions of JSON documents.

use crate::db::LogDb;
use crate::LogError;

/// The columns of one decision that usage analysis reads. Borrowed from the row being read;
/// copy what you keep.
#[derive(Debug, Clone, Copy)]
pub struct DecisionColumns<'row> {
    /// Position in the log.
    pub seq: u64,
    /// When it was decided (seconds since the Unix epoch).
    pub at: i64,
    /// The subject, `Type::"id"`.
    pub principal: &'row str,
    /// The answer given: `allow`, `deny`, `approval_required`.
    pub outcome: &'row str,
    /// The action name.
    pub action: &'row str,
    /// The resource, `Type::"id"`.
    pub resource: &'row str,
    /// JSON array: delegation hops, then the subject.
    pub entities: &'row str,
    /// JSON array: the determining policies.
    pub policies: &'row str,
}

impl LogDb {
    /// Decisions after seq `after`, in log order, handed to `visit` one at a time from the
    /// search columns. Pruned decisions are included: retention keeps their columns.
    pub fn scan_decision_columns(
        &self,
        after: u64,
        mut visit: impl FnMut(DecisionColumns<'_>) -> Result<(), LogError>,
    ) -> Result<(), LogError> {
        let mut statement = self.conn().prepare(
            "SELECT seq, at, principal, outcome, action, resource, entities, policies
             FROM entries WHERE seq > ?1 AND kind = 'decision' ORDER BY seq",
        )?;
        let mut rows = statement.query([after.min(i64::MAX as u64) as i64])?;
        while let Some(row) = rows.next()? {
            let text = |idx: usize| -> Result<&str, LogError> {
                row.get_ref(idx)?
                    .as_str()
                    .map_err(|err| LogError::Corrupt(format!("column {idx}: {err}")))
            };
            visit(DecisionColumns {
                seq: row.get::<_, i64>(0)? as u64,
                at: row.get(1)?,
                principal: text(2)?,
                outcome: text(3)?,
                action: text(4)?,
                resource: text(5)?,
                entities: text(6)?,
                policies: text(7)?,
            })?;
        }
        Ok(())
    }
}
