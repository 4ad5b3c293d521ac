//! Linux capability names (`capabilities(7)`), for `target.caps_within`
//! and for showing capability sets.
//!
//! Owns: the spelling of capability names in the policy and in every
//! message (lowercase, `cap_net_bind_service`). Trusts: the `caps` crate's
//! table of names and numbers (`caps::Capability`), which the test
//! `names_cover_the_running_kernel` checks against the running kernel's
//! `/proc/sys/kernel/cap_last_cap`. A bit the crate does not name is shown
//! as `cap_N` and can not be named in a policy.

use std::str::FromStr;

use caps::Capability;

/// Every capability the `caps` crate names, by number.
pub fn known_caps() -> Vec<Capability> {
    let mut all: Vec<Capability> = caps::all().into_iter().collect();
    all.sort_by_key(Capability::index);
    all
}

/// The mask of every capability the `caps` crate names.
pub fn known_caps_mask() -> u64 {
    caps::all().iter().fold(0, |m, c| m | c.bitmask())
}

/// The capability with number `bit`, if the `caps` crate names it.
pub fn capability(bit: u32) -> Option<Capability> {
    caps::all()
        .into_iter()
        .find(|c| u32::from(c.index()) == bit)
}

/// The lowercase name of capability number `bit` (`cap_chown`), or
/// `cap_N` for a number without a name.
pub fn cap_name(bit: u32) -> String {
    capability(bit).map_or_else(
        || format!("cap_{bit}"),
        |c| c.to_string().to_ascii_lowercase(),
    )
}

/// The number of a capability name (case-insensitive, `cap_` prefix
/// optional), parsed by `caps::Capability::from_str`.
pub fn cap_number(name: &str) -> Option<u32> {
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    Capability::from_str(&full)
        .ok()
        .map(|c| u32::from(c.index()))
}

/// The names of the bits set in `mask` (unknown bits as `cap_N`).
pub fn cap_mask_names(mask: u64) -> Vec<String> {
    (0..64u32)
        .filter(|b| mask & (1u64 << b) != 0)
        .map(cap_name)
        .collect()
}

/// A short text for a capability set: `none`, `all`, `all but cap_x,
/// cap_y` when most are set, or the list of names.
pub fn cap_mask_summary(mask: u64) -> String {
    let known = known_caps_mask();
    if mask == 0 {
        return "none".to_owned();
    }
    if mask & known == known && mask & !known == 0 {
        return "all".to_owned();
    }
    if (mask & known).count_ones() > 20 && mask & !known == 0 {
        return format!("all but {}", cap_mask_names(known & !mask).join(", "));
    }
    cap_mask_names(mask).join(", ")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(cap_number("cap_chown"), Some(0));
        assert_eq!(cap_number("CAP_NET_BIND_SERVICE"), Some(10));
        assert_eq!(cap_number("net_raw"), Some(13));
        assert_eq!(cap_number("Cap_Sys_Admin"), Some(21));
        assert_eq!(cap_number("cap_checkpoint_restore"), Some(40));
        assert_eq!(cap_number("cap_root"), None);
        assert_eq!(cap_number(""), None);
        assert_eq!(cap_number("cap_"), None);
        assert_eq!(cap_name(24), "cap_sys_resource");
        assert_eq!(cap_name(63), "cap_63");
        assert_eq!(cap_mask_summary(0), "none");
        assert_eq!(cap_mask_summary((1 << 41) - 1), "all");
        assert_eq!(
            cap_mask_summary(((1 << 41) - 1) & !(1 << 24)),
            "all but cap_sys_resource"
        );
        assert_eq!(cap_mask_summary(1 | (1 << 7)), "cap_chown, cap_setuid");
        assert_eq!(
            cap_mask_names((1 << 10) | (1 << 50)),
            vec!["cap_net_bind_service".to_owned(), "cap_50".to_owned()]
        );
    }

    /// Every name parses back to its own number, and the numbers are
    /// 0..N without a gap.
    #[test]
    fn names_round_trip() {
        let known = known_caps();
        for (i, c) in known.iter().enumerate() {
            assert_eq!(usize::from(c.index()), i, "{c} is not number {i}");
            let name = cap_name(u32::from(c.index()));
            assert_eq!(cap_number(&name), Some(u32::from(c.index())), "{name}");
        }
        assert_eq!(known_caps_mask().count_ones() as usize, known.len());
    }

    /// The table (the `caps` crate's) against the running kernel: every
    /// capability the kernel has (0 to `/proc/sys/kernel/cap_last_cap`)
    /// has a name here, so a policy can name it and no set is shown with a
    /// bare number; and the crate's own reading of the kernel agrees.
    #[test]
    fn names_cover_the_running_kernel() {
        let text = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .expect("reading /proc/sys/kernel/cap_last_cap");
        let last: u32 = text.trim().parse().expect("cap_last_cap is a number");
        for bit in 0..=last {
            assert!(
                capability(bit).is_some(),
                "the running kernel has capability {bit} (cap_last_cap {last}) and the caps crate has no name for it"
            );
        }
        let supported = caps::runtime::procfs_all_supported(None).expect("procfs_all_supported");
        let mask = supported.iter().fold(0u64, |m, c| m | c.bitmask());
        let want = if last >= 63 {
            u64::MAX
        } else {
            (1u64 << (last + 1)) - 1
        };
        assert_eq!(mask, want & known_caps_mask());
        assert_eq!(
            mask, want,
            "the kernel's capabilities are exactly 0..={last}"
        );
    }
}
