//! Runnable programs that show Palisade at work; see the `[[example]]` targets of this package.

#![forbid(unsafe_code)]

pub mod demo;
pub mod prometheus;
