//! Integration tests for the decision engine, through its public API only.

mod decide;
