//! Policy (placeholder).
#![forbid(unsafe_code)]
