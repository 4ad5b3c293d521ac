//! Exit codes shared by both helpers, the failure they end with, and the
//! error-chain text they print.

use std::error::Error;

/// The documented exit codes (`docs/TEAM-NOTES.md`, `SECURITY.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// Success (verify: integrity ok, signed, trusted).
    Ok = 0,
    /// Other error (configuration, I/O not covered below).
    Other = 1,
    /// Usage.
    Usage = 2,
    /// Access denied.
    AccessDenied = 3,
    /// Tampered or malformed image.
    Tampered = 4,
    /// Policy refusal.
    PolicyRefusal = 5,
    /// Dump failure.
    DumpFailed = 6,
    /// Restore failure.
    RestoreFailed = 7,
    /// verify: integrity ok but unsigned.
    Unsigned = 8,
    /// verify: integrity ok, signed, but the signer is not trusted.
    Untrusted = 9,
    /// A terminal signal (`SIGINT`, `SIGTERM`, `SIGHUP`, `SIGQUIT`,
    /// `SIGTSTP`) stopped a dump or restore before its effect; everything
    /// was rolled back.
    Interrupted = 10,
}

impl Exit {
    /// The numeric code.
    pub fn code(self) -> u8 {
        self as u8
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        std::process::ExitCode::from(e.code())
    }
}

/// `error: cause: cause ...`, each message once: a source whose text is
/// already part of the message before it (error types that print their
/// source themselves) is not repeated.
pub fn error_chain(err: &dyn Error) -> String {
    let mut out = err.to_string();
    let mut last = out.clone();
    let mut cur = err.source();
    while let Some(e) = cur {
        let text = e.to_string();
        if !text.is_empty() && !last.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        last = text;
        cur = e.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("inner: {0}")]
    struct Inner(#[source] std::io::Error);

    #[test]
    fn chain_without_repeats() {
        let e = Outer(Inner(std::io::Error::from_raw_os_error(2)));
        let s = error_chain(&e);
        assert_eq!(s.matches("No such file").count(), 1, "{s}");
        assert!(s.starts_with("outer: inner: "), "{s}");
    }
}

/// How a helper command failed: the exit code, what was being done, and the
/// error behind it, if any.
#[derive(Debug)]
pub struct Fail {
    pub exit: Exit,
    pub what: String,
    pub source: Option<Box<dyn Error>>,
}

impl Fail {
    pub fn new(exit: Exit, what: impl Into<String>) -> Fail {
        Fail {
            exit,
            what: what.into(),
            source: None,
        }
    }

    pub fn with(exit: Exit, what: impl Into<String>, e: impl Error + 'static) -> Fail {
        Fail {
            exit,
            what: what.into(),
            source: Some(Box::new(e)),
        }
    }

    /// `what: error: cause ...`, as is.
    pub fn text(&self) -> String {
        match &self.source {
            Some(e) => format!("{}: {}", self.what, error_chain(e.as_ref())),
            None => self.what.clone(),
        }
    }

    /// [`text`](Self::text) with control characters escaped, for a
    /// terminal (it may quote paths or names taken from an image or the
    /// caller).
    pub fn message(&self) -> String {
        escape_controls(&self.text())
    }
}

/// Untrusted text for a terminal or a log: control characters escaped.
pub fn escape_controls(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}
