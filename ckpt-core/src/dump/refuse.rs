//! Refusals at the level of the whole process: what the restore engine
//! cannot rebuild yet makes the dump fail with
//! [`DumpError::Unsupported`], naming the resource, so that an image never
//! promises what restore cannot keep. Refusals tied to one mapping or one
//! fd are made where those are captured ([`super::mm`], [`super::files`]).
//!
//! Lifting a refusal means: capture the state (a model type and a dump
//! module), restore it, check it in `image::validate`, remove the refusal
//! here, and add an end-to-end test.

use super::{DumpError, Frozen};
use crate::procfs;

impl Frozen {
    /// Children, in a dump of one process (`--tree` dumps them).
    /// (Threads are frozen and saved; seccomp strict mode is refused
    /// where the filters are read, in `seccomp`.)
    pub(super) fn refuse_children(&self) -> Result<(), DumpError> {
        // A child is listed under the thread that forked it: every thread's
        // list, not only the leader's.
        let tids = std::iter::once(self.pid).chain(self.threads.iter().map(|t| t.tracee.pid()));
        for tid in tids {
            let children =
                procfs::children::parse_children(&self.read_proc(&format!("task/{tid}/children"))?)
                    .map_err(self.parse_err("children"))?;
            if let Some(child) = children.first() {
                return Err(self.unsupported(format!(
                    "child process {child} (dump the whole tree with --tree)"
                )));
            }
        }
        Ok(())
    }
}

impl Frozen {
    /// Credentials are per thread: a thread that changed its own ids with
    /// a raw syscall (glibc changes every thread's) would come back with
    /// the leader's. Refused, naming the thread, rather than changed.
    pub(super) fn refuse_thread_creds(
        &self,
        leader: &procfs::status::Status,
    ) -> Result<(), DumpError> {
        for t in &self.threads {
            let tid = t.tracee.pid();
            let text = self.read_proc(&format!("task/{tid}/status"))?;
            let st = procfs::status::parse_status(&text).map_err(self.parse_err("status"))?;
            if creds_of(&st) != creds_of(leader) {
                return Err(self.unsupported(format!(
                    "thread {tid}, whose credentials differ from the leader's"
                )));
            }
        }
        Ok(())
    }
}

/// The credential lines of a status, for comparing threads.
fn creds_of(st: &procfs::status::Status) -> String {
    format!(
        "{:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?}",
        st.uid, st.gid, st.groups, st.cap_inh, st.cap_prm, st.cap_eff, st.cap_bnd, st.cap_amb
    )
}
