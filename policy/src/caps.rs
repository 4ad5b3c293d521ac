//! Linux capability names (`capabilities(7)`), for `target.caps_within`
//! and for showing capability sets.

/// Capability names by number (`CAP_CHOWN` is 0). Lowercase, as written in
/// the policy (`"cap_net_bind_service"`).
pub const CAP_NAMES: [&str; 41] = [
    "cap_chown",
    "cap_dac_override",
    "cap_dac_read_search",
    "cap_fowner",
    "cap_fsetid",
    "cap_kill",
    "cap_setgid",
    "cap_setuid",
    "cap_setpcap",
    "cap_linux_immutable",
    "cap_net_bind_service",
    "cap_net_broadcast",
    "cap_net_admin",
    "cap_net_raw",
    "cap_ipc_lock",
    "cap_ipc_owner",
    "cap_sys_module",
    "cap_sys_rawio",
    "cap_sys_chroot",
    "cap_sys_ptrace",
    "cap_sys_pacct",
    "cap_sys_admin",
    "cap_sys_boot",
    "cap_sys_nice",
    "cap_sys_resource",
    "cap_sys_time",
    "cap_sys_tty_config",
    "cap_mknod",
    "cap_lease",
    "cap_audit_write",
    "cap_audit_control",
    "cap_setfcap",
    "cap_mac_override",
    "cap_mac_admin",
    "cap_syslog",
    "cap_wake_alarm",
    "cap_block_suspend",
    "cap_audit_read",
    "cap_perfmon",
    "cap_bpf",
    "cap_checkpoint_restore",
];

/// The number of a capability name (case-insensitive, `cap_` prefix
/// optional).
pub fn cap_number(name: &str) -> Option<u32> {
    let lower = name.to_ascii_lowercase();
    let full = if lower.starts_with("cap_") {
        lower
    } else {
        format!("cap_{lower}")
    };
    CAP_NAMES
        .iter()
        .position(|n| *n == full)
        .and_then(|i| u32::try_from(i).ok())
}

/// The names of the bits set in `mask` (unknown bits as `cap_N`).
pub fn cap_mask_names(mask: u64) -> Vec<String> {
    (0..64u32)
        .filter(|b| mask & (1u64 << b) != 0)
        .map(|b| {
            CAP_NAMES
                .get(b as usize)
                .map_or_else(|| format!("cap_{b}"), |n| (*n).to_owned())
        })
        .collect()
}

/// A short text for a capability set: `none`, `all`, `all but cap_x,
/// cap_y` when most are set, or the list of names.
pub fn cap_mask_summary(mask: u64) -> String {
    let known: u64 = (1u64 << CAP_NAMES.len()) - 1;
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
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(cap_number("cap_chown"), Some(0));
        assert_eq!(cap_number("CAP_NET_BIND_SERVICE"), Some(10));
        assert_eq!(cap_number("net_raw"), Some(13));
        assert_eq!(cap_number("cap_checkpoint_restore"), Some(40));
        assert_eq!(cap_number("cap_root"), None);
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
}
