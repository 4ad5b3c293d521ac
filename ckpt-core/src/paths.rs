//! Fixed locations, chosen at build time.
//!
//! `CKPT_SYSCONFDIR` (default `/etc/ckpt`), `CKPT_STATEDIR` (default
//! `/var/lib/ckpt`) and `CKPT_LIBEXECDIR` (default `/usr/lib/ckpt`) are read
//! by `option_env!` when the crate is compiled.
//! Nothing at run time (environment, flags) can change them: the helpers are
//! setuid root and these paths hold the host key and the admin's policy.

/// Configuration directory: `ckpt.toml`, `policy.toml`, `policy.d/`, `keys/`.
pub const SYSCONFDIR: &str = match option_env!("CKPT_SYSCONFDIR") {
    Some(dir) => dir,
    None => "/etc/ckpt",
};

/// Root-owned state directory (one-shot ledger, file digest cache).
pub const STATEDIR: &str = match option_env!("CKPT_STATEDIR") {
    Some(dir) => dir,
    None => "/var/lib/ckpt",
};

/// Directory of the programs the helpers start themselves (never found
/// through `PATH`, `argv[0]` or `/proc/self/exe`): `ckpt-tpm-agent`.
pub const LIBEXECDIR: &str = match option_env!("CKPT_LIBEXECDIR") {
    Some(dir) => dir,
    None => "/usr/lib/ckpt",
};

/// The TPM agent `ckpt-sign` starts, as root, when a TPM is needed.
pub fn tpm_agent() -> std::path::PathBuf {
    std::path::Path::new(LIBEXECDIR).join("ckpt-tpm-agent")
}

/// Directory holding host keys.
pub fn keys_dir() -> std::path::PathBuf {
    std::path::Path::new(SYSCONFDIR).join("keys")
}

/// The admin policy file.
pub fn policy_file() -> std::path::PathBuf {
    std::path::Path::new(SYSCONFDIR).join("policy.toml")
}

/// Drop-in policy directory, merged in name order.
pub fn policy_dropin_dir() -> std::path::PathBuf {
    std::path::Path::new(SYSCONFDIR).join("policy.d")
}

/// Host configuration file.
pub fn host_config_file() -> std::path::PathBuf {
    std::path::Path::new(SYSCONFDIR).join("ckpt.toml")
}
