//! Command-line front end: thin wrappers over the library, one file per command group.

pub mod data;
pub mod model;
pub mod train;
