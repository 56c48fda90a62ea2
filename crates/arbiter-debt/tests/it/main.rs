//! Trust debt on real files: a store, a decision log written through the real writer, the
//! engine deciding, and the what-if replay checking suggestions.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail loudly by design"
)]

mod fixture;
mod html;
mod planted;
mod policy_input;
mod trends;
