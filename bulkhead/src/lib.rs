//! Fixed and adaptive concurrency limits for tower. This crate is a placeholder for the layer's implementation, which lands in its own issue.

#![forbid(unsafe_code)]
