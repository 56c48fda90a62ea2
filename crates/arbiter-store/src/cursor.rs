//! Opaque key-set cursors for paged listings, the same for every backend.
//!
//! A cursor is the hex encoding of `["listing", "type", "id"]`: the key of the last item of the
//! page, tagged with the listing it came from. Callers must treat it as opaque; hex keeps it safe
//! in a URL query without escaping.

use crate::{PageOf, StoreError};

/// The key of the last item on a page: (type or kind, id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CursorKey {
    pub(crate) entity_type: String,
    pub(crate) id: String,
}

/// Encodes the key of the last item of a page of `listing`.
pub(crate) fn encode(listing: &str, key: &CursorKey) -> String {
    // Serialising a tuple of strings cannot fail; the fallback keeps this function total.
    let json = serde_json::to_string(&(listing, &key.entity_type, &key.id)).unwrap_or_default();
    let mut hex = String::with_capacity(json.len() * 2);
    for byte in json.bytes() {
        hex.push(hex_digit(byte >> 4));
        hex.push(hex_digit(byte & 0x0f));
    }
    hex
}

/// Decodes a cursor of `listing`, or says why it is not one.
pub(crate) fn decode(listing: &str, cursor: &str) -> Result<CursorKey, StoreError> {
    let invalid = || {
        StoreError::invalid(
            "after",
            format!("`{cursor}` is not a cursor of this listing"),
        )
    };
    let digits = cursor.as_bytes();
    if !digits.len().is_multiple_of(2) {
        return Err(invalid());
    }
    let mut bytes = Vec::with_capacity(digits.len() / 2);
    for pair in digits.chunks_exact(2) {
        let (Some(&high), Some(&low)) = (pair.first(), pair.get(1)) else {
            return Err(invalid());
        };
        let (Some(high), Some(low)) = (hex_value(high), hex_value(low)) else {
            return Err(invalid());
        };
        bytes.push((high << 4) | low);
    }
    let (tag, entity_type, id): (String, String, String) =
        serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    if tag != listing {
        return Err(invalid());
    }
    Ok(CursorKey { entity_type, id })
}

/// Turns the rows a backend fetched (up to `limit + 1`, in key order) into a page: the extra row,
/// if any, only says that there is a next page.
pub(crate) fn into_page<T>(listing: &str, mut rows: Vec<(CursorKey, T)>, limit: u32) -> PageOf<T> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let next = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(|(key, _)| encode(listing, key))
    } else {
        None
    };
    PageOf {
        items: rows.into_iter().map(|(_, item)| item).collect(),
        next,
    }
}

/// The least string greater than every string that starts with `prefix`, or `None` when there is
/// none (the prefix is empty or all `char::MAX`). With it, "starts with" is the key range
/// `prefix <= id < end`, which an index serves: UTF-8 byte order is code point order.
pub(crate) fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let successor = match last {
            '\u{D7FF}' => Some('\u{E000}'),
            other => char::from_u32(u32::from(other) + 1),
        };
        if let Some(successor) = successor {
            chars.push(successor);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

fn hex_digit(nibble: u8) -> char {
    char::from_digit(u32::from(nibble), 16).unwrap_or('0')
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(entity_type: &str, id: &str) -> CursorKey {
        CursorKey {
            entity_type: entity_type.to_owned(),
            id: id.to_owned(),
        }
    }

    #[test]
    fn round_trips_any_key() {
        for (entity_type, id) in [
            ("ai_agent", "build-bot"),
            ("Group", ""),
            ("Tool", "quote\"back\\slash,comma ünïcode \u{0}"),
        ] {
            let cursor = encode("identities", &key(entity_type, id));
            assert!(cursor.bytes().all(|b| b.is_ascii_hexdigit()));
            assert_eq!(decode("identities", &cursor), Ok(key(entity_type, id)));
        }
    }

    #[test]
    fn prefix_end_bounds_exactly_the_strings_with_the_prefix() {
        assert_eq!(prefix_end(""), None);
        assert_eq!(prefix_end("bot"), Some("bou".to_owned()));
        assert_eq!(prefix_end("a\u{D7FF}"), Some("a\u{E000}".to_owned()));
        assert_eq!(prefix_end("a\u{10FFFF}"), Some("b".to_owned()));
        assert_eq!(prefix_end("\u{10FFFF}"), None);
        let end = prefix_end("bot-").unwrap();
        for inside in ["bot-", "bot-1", "bot-\u{10FFFF}\u{10FFFF}"] {
            assert!("bot-" <= inside && inside < end.as_str(), "{inside}");
        }
        for outside in ["bot", "bot.", "bou", "bot,"] {
            assert!(!("bot-" <= outside && outside < end.as_str()), "{outside}");
        }
    }

    #[test]
    fn into_page_keeps_the_extra_row_only_as_a_cursor() {
        let rows = |n: usize| {
            (0..n)
                .map(|i| (key("t", &i.to_string()), i))
                .collect::<Vec<_>>()
        };
        let full = into_page("l", rows(3), 2);
        assert_eq!(full.items, vec![0, 1]);
        assert_eq!(decode("l", &full.next.unwrap()), Ok(key("t", "1")));
        let last = into_page("l", rows(2), 2);
        assert_eq!((last.items, last.next), (vec![0, 1], None));
    }

    #[test]
    fn rejects_foreign_and_malformed_cursors() {
        let groups_cursor = encode("groups", &key("Group", "eng"));
        for bad in [groups_cursor.as_str(), "", "abc", "zz", "00", "5b5d"] {
            let error = decode("identities", bad).unwrap_err();
            assert!(
                matches!(error, StoreError::Invalid { field: "after", .. }),
                "{bad}: {error}"
            );
        }
    }
}
