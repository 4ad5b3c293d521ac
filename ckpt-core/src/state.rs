//! The saved state of one process, under its historical path: a re-export
//! of [`crate::model`], kept so that `ckpt_core::state::*` still works for
//! the other crates. New code uses [`crate::model`].

pub use crate::model::*;
