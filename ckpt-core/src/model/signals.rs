//! Signals: dispositions (process-wide) and queued signals (per thread or
//! shared). The mask and alternate stack are per thread
//! ([`super::ThreadState`]).
//!
//! Trusts nothing: plain data, checked by [`crate::image::validate`].

use std::fmt;

use serde::ser::SerializeSeq as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One signal's disposition (kernel `struct sigaction` layout on x86_64).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigAction {
    pub signal: u32,
    pub handler: u64,
    pub flags: u64,
    pub restorer: u64,
    pub mask: u64,
}

/// A signal waiting to be delivered (from `PTRACE_PEEKSIGINFO`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingSignal {
    /// True when queued to the whole process, false when to this thread.
    pub shared: bool,
    /// Raw 128-byte `siginfo_t`.
    pub siginfo: Vec<u8>,
}

/// A process's signal dispositions, held without the defaults.
///
/// Most of the 62 dispositions a process has are `SIG_DFL` with no flags,
/// restorer or mask, and a tree's helpers hold every process's for as long
/// as they hold the manifest. So only the others are kept, with the set
/// of signals listed; the image encodes the list as before, every listed
/// signal (ascending), so this changes no image that dump writes.
///
/// Trusts nothing: a list with an entry that is not a signal that can be
/// caught, or a signal twice, is kept as far as it is valid and reports
/// its first bad entry ([`SigActions::first_invalid`]), which
/// [`crate::image::validate`] refuses.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SigActions {
    /// The signals listed: bit `n - 1` for signal `n`.
    listed: u64,
    /// The listed dispositions that are not the default, by signal.
    set: Vec<SigAction>,
    /// Entries in the list, valid or not.
    entries: usize,
    /// The first entry that was not valid: its index, its signal, why.
    invalid: Option<(usize, u32, &'static str)>,
}

impl SigActions {
    /// The dispositions `actions`, in the order listed.
    pub fn new(actions: impl IntoIterator<Item = SigAction>) -> SigActions {
        let mut all = SigActions::default();
        for a in actions {
            all.push(a);
        }
        all.set.shrink_to_fit();
        all
    }

    fn push(&mut self, a: SigAction) {
        let index = self.entries;
        self.entries += 1;
        // SIGKILL (9) and SIGSTOP (19) cannot have a disposition.
        let why = if a.signal == 0 || a.signal > 64 || a.signal == 9 || a.signal == 19 {
            Some("is not a signal that can be caught")
        } else if self.listed & (1u64 << (a.signal - 1)) != 0 {
            Some("appears twice")
        } else {
            None
        };
        if let Some(why) = why {
            self.invalid.get_or_insert((index, a.signal, why));
            return;
        }
        self.listed |= 1u64 << (a.signal - 1);
        if a != SigAction::default_for(a.signal) {
            self.set.push(a);
        }
    }

    /// Every valid disposition listed, by ascending signal.
    pub fn iter(&self) -> impl Iterator<Item = SigAction> + '_ {
        (1u32..=64)
            .filter(move |s| self.listed & (1u64 << (s - 1)) != 0)
            .map(move |s| {
                self.set
                    .iter()
                    .find(|a| a.signal == s)
                    .copied()
                    .unwrap_or_else(|| SigAction::default_for(s))
            })
    }

    /// How many entries the list had, valid or not.
    pub fn len(&self) -> usize {
        self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// The first entry that is not a signal that can be caught, or that
    /// names a signal listed before: (its index, its signal, why).
    pub fn first_invalid(&self) -> Option<(usize, u32, &'static str)> {
        self.invalid
    }
}

impl SigAction {
    /// `SIG_DFL`, with no flags, restorer or mask.
    pub fn default_for(signal: u32) -> SigAction {
        SigAction {
            signal,
            handler: 0,
            flags: 0,
            restorer: 0,
            mask: 0,
        }
    }
}

impl From<Vec<SigAction>> for SigActions {
    fn from(actions: Vec<SigAction>) -> SigActions {
        SigActions::new(actions)
    }
}

impl fmt::Debug for SigActions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()?;
        if let Some((i, s, why)) = self.invalid {
            write!(f, " (entry {i}, signal {s}, {why})")?;
        }
        Ok(())
    }
}

impl Serialize for SigActions {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.listed.count_ones() as usize))?;
        for a in self.iter() {
            seq.serialize_element(&a)?;
        }
        seq.end()
    }
}

impl super::ListBuilder<SigAction> for SigActions {
    type Built = SigActions;
    fn push_entry(&mut self, a: SigAction) {
        self.push(a);
    }
    fn build(mut self) -> SigActions {
        self.set.shrink_to_fit();
        self
    }
}

impl<'de> Deserialize<'de> for SigActions {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        super::deserialize_list::<D, SigAction, SigActions>(d, "a list of signal dispositions")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]
    use super::super::cbor;
    use super::*;

    /// What dump captures: every signal but SIGKILL and SIGSTOP, in order,
    /// three of them caught or ignored.
    fn all_62() -> Vec<SigAction> {
        (1u32..=64)
            .filter(|&s| s != 9 && s != 19)
            .map(|s| match s {
                2 => SigAction {
                    signal: s,
                    handler: 0x40_1000,
                    flags: 0x0400_0000,
                    restorer: 0x40_2000,
                    mask: 1 << 14,
                },
                13 => SigAction {
                    handler: 1,
                    ..SigAction::default_for(s)
                },
                34 => SigAction {
                    flags: 0x1000_0000,
                    ..SigAction::default_for(s)
                },
                _ => SigAction::default_for(s),
            })
            .collect()
    }

    #[test]
    fn keeps_only_what_is_not_the_default_and_gives_back_every_one() {
        let list = all_62();
        let all = SigActions::new(list.clone());
        assert_eq!(all.len(), 62);
        assert_eq!(all.set.len(), 3);
        assert_eq!(all.iter().collect::<Vec<_>>(), list);
        assert_eq!(all.first_invalid(), None);
    }

    #[test]
    fn encodes_as_the_list_it_was() {
        let list = all_62();
        let all = SigActions::new(list.clone());
        assert_eq!(cbor(&all), cbor(&list));
        let back: SigActions = ciborium::de::from_reader(&cbor(&list)[..]).expect("decode");
        assert_eq!(back, all);
    }

    #[test]
    fn reports_the_first_bad_entry() {
        let d = SigAction::default_for;
        for bad in [0, 9, 19, 65] {
            let all = SigActions::new([d(1), d(bad), d(2)]);
            assert_eq!(
                all.first_invalid(),
                Some((1, bad, "is not a signal that can be caught"))
            );
            assert_eq!(all.len(), 3);
        }
        let twice = SigActions::new([d(10), d(11), d(10), d(0)]);
        assert_eq!(twice.first_invalid(), Some((2, 10, "appears twice")));
        // A caught signal listed again is refused too, and the first one
        // is what is kept.
        let caught = SigAction {
            handler: 0x1000,
            ..d(10)
        };
        let again = SigActions::new([caught, d(10)]);
        assert_eq!(again.first_invalid(), Some((1, 10, "appears twice")));
        assert_eq!(again.iter().collect::<Vec<_>>(), vec![caught]);
    }
}
