//! Restore-specific checks on an image, made before anything is created:
//! [`validate`] (the rules every reader applies) again, then what this
//! restore can build (the architecture, the number of groups).
//!
//! Owns: the [`Plan`], the checked facts the build then relies on. Trusts:
//! nothing in the manifest.

use super::RestoreError;
use crate::image::validate::validate;
use crate::image::{ImageError, Manifest, Space, FORMAT_VERSION, FORMAT_VERSION_1};
use crate::model::ThreadState;

/// Checked facts about the image, derived before anything is created.
pub(super) struct Plan<'m> {
    /// The thread-group leader (the stub itself becomes it).
    pub(super) thread: &'m ThreadState,
    /// Every other thread, re-created by an injected `clone`.
    pub(super) others: &'m [ThreadState],
    /// Which of the image's spaces is the task's memory.
    pub(super) memory_space: Option<u32>,
}

impl<'m> Plan<'m> {
    /// The image is well-formed ([`validate`], the same check every reader
    /// ran when opening it), and this restore can build it.
    pub(super) fn check_image(m: &Manifest) -> Result<(), RestoreError> {
        validate(m).map_err(|e| RestoreError::Image(ImageError::Invalid(e)))?;
        // Both versions the reader accepts restore: a version-1 image was
        // converted to this form when it was read.
        if m.format_version != FORMAT_VERSION && m.format_version != FORMAT_VERSION_1 {
            return Err(RestoreError::Unsupported(format!(
                "image format version {}",
                m.format_version
            )));
        }
        if m.arch != "x86_64" {
            return Err(RestoreError::Incompatible(format!(
                "image is for {}",
                m.arch
            )));
        }
        if m.tasks.is_empty() {
            return Err(RestoreError::Invalid("no process".into()));
        }
        Ok(())
    }

    /// The facts about task `task` of an image [`Plan::check_image`]
    /// accepted.
    pub(super) fn for_task(m: &'m Manifest, task: usize) -> Result<Plan<'m>, RestoreError> {
        let p = m
            .tasks
            .get(task)
            .ok_or_else(|| RestoreError::Invalid(format!("no task {task}")))?;
        let memory_space = m
            .spaces
            .iter()
            .position(|s| matches!(s, Space::Memory { task: t } if *t as usize == task))
            .and_then(|i| u32::try_from(i).ok());
        let (thread, others) = match p.threads.split_first() {
            Some((t, rest)) => (t, rest),
            // `validate` refuses an image without threads.
            None => return Err(RestoreError::Invalid("no thread".into())),
        };
        // The groups are written into the scratch page.
        if p.creds.groups.len() > 512 {
            return Err(RestoreError::Unsupported(format!(
                "{} supplementary groups",
                p.creds.groups.len()
            )));
        }
        Ok(Plan {
            thread,
            others,
            memory_space,
        })
    }
}
