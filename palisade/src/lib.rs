//! Palisade: resilience layers for [tower](https://docs.rs/tower).
//!
//! This facade re-exports the Palisade crates behind features, so an application depends on
//! one crate. Today it carries the shared vocabulary, [`core`]: clocks, outcome
//! classification, events and the `test-util` mock backend. The layers join it as they land.
//!
//! # Example
//!
//! ```
//! use palisade::core::classify::{Classify, ErrorIsFailure, Outcome};
//!
//! let outcome = Classify::<(), &str>::classify(&ErrorIsFailure, Err(&"timed out"));
//! assert_eq!(outcome, Outcome::Failure);
//! ```

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub use palisade_core as core;

/// The README's code blocks, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
