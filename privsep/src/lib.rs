//! Privilege separation (placeholder).
