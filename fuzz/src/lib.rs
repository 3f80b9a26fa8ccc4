//! Ember's fuzz target bodies as plain functions: each `fuzz_targets/<name>.rs` binary calls one,
//! and the main workspace's replay tests run the same functions over the committed corpora.

pub mod formats;
pub mod http;
pub mod replay;
