//! Keys (placeholder).
#![forbid(unsafe_code)]
