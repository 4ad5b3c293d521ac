//! Files whose content is in the image (a memfd, a file unlinked while
//! open): created in the stub with that content before the mappings, so
//! that shared mappings and every description of one file share it.
//!
//! Owns: the stub's fd of each such file until the fd table is rebuilt.
//! Trusts: nothing in the image (spaces, sizes and chunks are checked by
//! `validate`; chunk data is re-hashed as it is read).

use super::super::{Builder, RestoreError};

impl Builder<'_> {
    /// The stub's fd of the file whose content is space `space`, dup'ed
    /// above `top`, for a description of it.
    pub(super) fn saved_file_fd(&mut self, space: u32, _top: i32) -> Result<u64, RestoreError> {
        Err(RestoreError::Unsupported(format!(
            "the content of file space {space} (a memfd or unlinked file)"
        )))
    }
}
