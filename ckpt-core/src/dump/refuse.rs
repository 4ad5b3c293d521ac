//! Refusals at the level of the whole process: what the restore engine
//! cannot rebuild yet makes the dump fail with
//! [`DumpError::Unsupported`], naming the resource, so that an image never
//! promises what restore cannot keep. Refusals tied to one mapping or one
//! fd are made where those are captured ([`super::mm`], [`super::files`]).
//!
//! Lifting a refusal means: capture the state (a model type and a dump
//! module), restore it, check it in `image::validate`, remove the refusal
//! here, and add an end-to-end test.

use super::{proc_path, DumpError, Frozen};
use crate::procfs;

impl Frozen {
    /// Threads, children. (Seccomp strict mode is refused where the
    /// filters are read, in `seccomp`.)
    pub(super) fn refuse_process_level(
        &self,
        status: &procfs::status::Status,
    ) -> Result<(), DumpError> {
        let pid = self.pid;
        if status.threads != 1 {
            let tids = task_ids(pid).unwrap_or_default();
            let other = tids.into_iter().find(|t| *t != pid).unwrap_or(0);
            return Err(self.unsupported(format!(
                "thread {other} (process has {} threads)",
                status.threads
            )));
        }
        let children =
            procfs::children::parse_children(&self.read_proc(&format!("task/{pid}/children"))?)
                .map_err(self.parse_err("children"))?;
        if let Some(child) = children.first() {
            return Err(self.unsupported(format!("child process {child}")));
        }
        Ok(())
    }
}

fn task_ids(pid: i32) -> std::io::Result<Vec<i32>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(proc_path(pid, "task"))? {
        if let Some(t) = e?.file_name().to_str().and_then(|s| s.parse().ok()) {
            out.push(t);
        }
    }
    Ok(out)
}
