//! ember-core's CPU kernels (`crates/ember-core/src/kernels`), the same source files compiled as a
//! crate of their own so their tests can be cross-built for AArch64 without the rest of the core's
//! dependency tree (see Cargo.toml). Nothing here is code of its own.

#[path = "../ember-core/src/kernels/mod.rs"]
pub mod kernels;
