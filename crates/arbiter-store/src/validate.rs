//! Argument checks every backend runs before touching its database, so that all backends accept
//! and refuse exactly the same calls.
//!
//! The store checks only what it needs to keep its own keys and records sound. Whether an
//! inventory makes sense (owners exist, parents exist, non-human identities have an owner) is
//! for the caller to check, by building a snapshot, before it writes.

use crate::cursor::{self, CursorKey};
use crate::{Actor, ApiKeyRecord, Page, PolicySourceRecord, StoreError, MAX_PAGE_LIMIT};
use arbiter_core::{Group, Identity, Resource, Signal};
use std::collections::HashSet;

pub(crate) fn actor(actor: &Actor) -> Result<(), StoreError> {
    non_empty("actor", "the actor id", &actor.id)
}

pub(crate) fn limit(limit: u32) -> Result<u32, StoreError> {
    if (1..=MAX_PAGE_LIMIT).contains(&limit) {
        Ok(limit)
    } else {
        Err(StoreError::invalid(
            "limit",
            format!("`{limit}` is not between 1 and {MAX_PAGE_LIMIT}"),
        ))
    }
}

/// The limit and the decoded cursor of a page of `listing`.
pub(crate) fn page(listing: &str, page: &Page) -> Result<(u32, Option<CursorKey>), StoreError> {
    let limit = limit(page.limit)?;
    let after = match &page.after {
        Some(cursor) => Some(cursor::decode(listing, cursor)?),
        None => None,
    };
    Ok((limit, after))
}

pub(crate) fn identity(identity: &Identity) -> Result<(), StoreError> {
    non_empty("id", "the identity id", &identity.id)
}

pub(crate) fn group(group: &Group) -> Result<(), StoreError> {
    non_empty("type", "the group type", &group.group_type)?;
    non_empty("id", "the group id", &group.id)
}

pub(crate) fn resource(resource: &Resource) -> Result<(), StoreError> {
    non_empty("type", "the resource type", &resource.resource_type)?;
    non_empty("id", "the resource id", &resource.id)
}

pub(crate) fn signal(signal: &Signal) -> Result<(), StoreError> {
    non_empty("subject", "the subject type", &signal.subject.entity_type)?;
    non_empty("subject", "the subject id", &signal.subject.id)?;
    non_empty("name", "the signal name", &signal.name)
}

pub(crate) fn control(control: &arbiter_core::Control) -> Result<(), StoreError> {
    use arbiter_core::ControlLevel;
    non_empty("id", "the control id", &control.id)?;
    non_empty("target", "the target type", &control.target.entity_type)?;
    non_empty("target", "the target id", &control.target.id)?;
    non_empty("reason", "the reason", &control.reason)?;
    match control.level {
        ControlLevel::Downgrade if control.overlay.as_deref().is_none_or(str::is_empty) => Err(
            StoreError::invalid("overlay", "a downgrade names the overlay it applies"),
        ),
        ControlLevel::Downgrade => Ok(()),
        _ if control.overlay.is_some() => Err(StoreError::invalid(
            "overlay",
            "only a downgrade applies an overlay",
        )),
        ControlLevel::Quarantine => Ok(()),
        _ if !control.safe_actions.is_empty() => Err(StoreError::invalid(
            "safe_actions",
            "only a quarantine has a safe set",
        )),
        _ => Ok(()),
    }
}

pub(crate) fn policy_version(
    sources: &[PolicySourceRecord],
    digest: &str,
) -> Result<(), StoreError> {
    non_empty("digest", "the digest", digest)?;
    let mut names = HashSet::new();
    for source in sources {
        non_empty("sources", "a source name", &source.name)?;
        if !names.insert(source.name.as_str()) {
            return Err(StoreError::invalid(
                "sources",
                format!("source name `{}` appears twice", source.name),
            ));
        }
    }
    Ok(())
}

pub(crate) fn new_api_key(key: &ApiKeyRecord) -> Result<(), StoreError> {
    non_empty("id", "the key id", &key.id)?;
    non_empty("name", "the key name", &key.name)?;
    non_empty("role", "the key role", &key.role)?;
    non_empty("key_hash", "the key hash", &key.key_hash)?;
    if key.revoked_at.is_some() {
        return Err(StoreError::invalid(
            "revoked_at",
            "a new key cannot already be revoked",
        ));
    }
    Ok(())
}

fn non_empty(field: &'static str, what: &str, value: &str) -> Result<(), StoreError> {
    if value.is_empty() {
        Err(StoreError::invalid(field, format!("{what} is empty")))
    } else {
        Ok(())
    }
}
