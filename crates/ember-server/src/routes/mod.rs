//! Route handlers, one module per API family.

pub mod health;
pub mod native;
