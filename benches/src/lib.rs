//! Criterion benchmarks of Palisade beside its peers: see `benches/` in this package and run
//! `cargo bench -p palisade-benches`.

#![forbid(unsafe_code)]
