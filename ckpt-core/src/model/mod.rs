//! The saved state of one process: what dump captures and restore rebuilds.
//!
//! These types are plain data, serialised into the image manifest (CBOR).
//! They own no resources and trust nothing: a [`ProcessState`] read from an
//! image is attacker-controlled until the image's signature has been
//! checked, and restore still validates every field it acts on (addresses,
//! sizes, counts) against the limits in [`crate::limits`].
//!
//! One module per kind of state, the same split as [`crate::dump`] and
//! [`crate::restore`]: [`task`] (the process and its threads), [`mm`]
//! (mappings and the mm layout), [`creds`], [`signals`], [`timers`] (and
//! resource limits), [`files`] (file identities, fds and open file
//! descriptions; the descriptions themselves are the image's file table,
//! `Manifest::files`, shared by every task). Memory contents are not here:
//! they are the image's bulk chunks, each naming the space (a task's
//! memory) and address it belongs at.
//!
//! The serde representation (field names, field order, enum
//! representation) is the image format: moving a type between these
//! modules changes nothing, renaming or reordering a field does. A unit
//! test in `image` (`model_reencodes_seeds_byte_for_byte`) pins it against
//! the committed fuzz seeds.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// `#[serde(deserialize_with = "shrunk")]` for the lists every process has
/// (its mappings, its threads' xsave areas, ...): a decoded `Vec` grows by
/// doubling and would keep up to twice the room it needs, in every process
/// of a tree, for as long as the manifest is held.
pub(crate) fn shrunk<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Vec<T>, D::Error> {
    let mut v = Vec::<T>::deserialize(d)?;
    v.shrink_to_fit();
    Ok(v)
}

/// What a compact model type is built from as its list is decoded, one
/// entry at a time (`VmFlags`, `XsaveArea`, `SigActions`): each keeps only
/// what it needs of an entry, so the decoded list is never held.
pub(crate) trait ListBuilder<E>: Default {
    type Built;
    fn push_entry(&mut self, entry: E);
    fn build(self) -> Self::Built;
}

/// Decodes a CBOR array of `E` through the builder `B`; `expecting` names
/// it in errors. Each entry is decoded whole, one at a time: the decoder's
/// memory budget charges it as an entry of a `Vec<E>`.
pub(crate) fn deserialize_list<'de, D, E, B>(
    d: D,
    expecting: &'static str,
) -> Result<B::Built, D::Error>
where
    D: Deserializer<'de>,
    E: Deserialize<'de>,
    B: ListBuilder<E>,
{
    struct V<E, B>(&'static str, PhantomData<(E, B)>);
    impl<'de, E: Deserialize<'de>, B: ListBuilder<E>> Visitor<'de> for V<E, B> {
        type Value = B::Built;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<B::Built, A::Error> {
            let mut b = B::default();
            while let Some(entry) = seq.next_element::<E>()? {
                b.push_entry(entry);
            }
            Ok(b.build())
        }
    }
    d.deserialize_seq(V::<E, B>(expecting, PhantomData))
}

/// The CBOR encoding of `v`, for the model's unit tests.
#[cfg(test)]
#[allow(clippy::expect_used)]
pub(crate) fn cbor<T: serde::Serialize>(v: &T) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::ser::into_writer(v, &mut out).expect("encode");
    out
}

pub mod creds;
pub mod files;
pub mod mm;
pub mod signals;
pub mod task;
pub mod timers;
pub mod xsave;

pub use creds::{Credentials, Namespaces, NsId, SeccompFilter};
pub use files::{
    ByteString, EpollTarget, FileLock, InotifyWatch, LockKind, EPOLL_PRIVATE_BITS,
    INOTIFY_MASK_BITS,
};
pub use files::{Datagram, SocketFile};
pub use files::{
    FdState, FileIdentity, InetAddr, InetOptions, OpenFile, OpenFileKind, TIMERFD_CLOCKS,
};
pub use files::{PtyQueues, PtyTerminal, Termios, WinSize, TERMIOS_NCCS};
pub use mm::{MmLayout, VmFlags, Vma, VmaKind, MAX_VM_FLAG_LEN};
pub use signals::{PendingSignal, SigAction, SigActions};
pub use task::{GpRegs, ProcessState, RobustFutex, Rseq, Sched, ThreadState, Zombie};
pub use timers::{
    ITimer, PosixTimer, Rlimit, POSIX_TIMER_CLOCKS, POSIX_TIMER_NOTIFY, SIGEV_THREAD_ID,
};
pub use xsave::XsaveArea;
