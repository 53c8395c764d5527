//! Shared helpers for the strata criterion benchmarks.
