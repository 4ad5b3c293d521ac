//! Architecture-specific register state. Only x86_64 exists so far.

pub mod x86_64;
