//! GCRA rate limiting for tower, shared and keyed. This crate is a placeholder for the layer's implementation, which lands in its own issue.

#![forbid(unsafe_code)]
