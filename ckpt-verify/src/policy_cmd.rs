//! `ckpt-verify policy check [FILE]`, like `visudo -c`.
//!
//! Without FILE: the installed policy (`<sysconfdir>/policy.toml` and
//! `policy.d/*.toml`), with the ownership and mode checks the helpers apply.
//! With FILE: that file is opened as the caller and only parsed and
//! validated (it is never trusted for anything), so any user may check a
//! draft.

use std::io::Read;
use std::path::Path;

use ckpt_policy::{Policy, MAX_POLICY_LEN};
use ckpt_privsep::report::{error_chain, Exit};
use ckpt_privsep::Caller;

use crate::checked::open_file_as_caller;
use crate::{show, Fail, PROG};

fn summary(p: &Policy) -> String {
    format!(
        "{} trusted keys, {} revoked, {} rules",
        p.keys.len(),
        p.revoked.len(),
        p.rules.len()
    )
}

pub(crate) fn check(caller: &Caller, file: Option<&Path>) -> Result<Exit, Fail> {
    let (shown, result) = match file {
        Some(path) => {
            let f = open_file_as_caller(caller, path, "the policy file")?;
            let mut bytes = Vec::new();
            f.take(MAX_POLICY_LEN + 1)
                .read_to_end(&mut bytes)
                .map_err(|e| Fail::with(Exit::Other, "cannot read the policy file", e))?;
            let result = if bytes.len() as u64 > MAX_POLICY_LEN {
                Err(format!("too large (at most {MAX_POLICY_LEN} bytes)"))
            } else {
                match String::from_utf8(bytes) {
                    Ok(text) => ckpt_policy::parse_str(&text, path).map_err(|e| error_chain(&e)),
                    Err(_) => Err("not UTF-8 text".to_owned()),
                }
            };
            (path.to_path_buf(), result)
        }
        None => {
            let path = ckpt_core::paths::policy_file();
            let result = ckpt_policy::load(&path, Some(&ckpt_core::paths::policy_dropin_dir()))
                .map_err(|e| error_chain(&e));
            (path, result)
        }
    };
    let shown = show(&shown.to_string_lossy());
    match result {
        Ok(p) => {
            outln!("{shown}: OK ({})", summary(&p));
            // Names are resolved at restore time; say which do not resolve
            // now (a typo would silently never match).
            let (users, groups) = p.names();
            for u in users {
                if !matches!(nix::unistd::User::from_name(&u), Ok(Some(_))) {
                    errln!(
                        "{PROG}: warning: {shown}: no user {:?} on this host",
                        show(&u)
                    );
                }
            }
            for g in groups {
                if !matches!(nix::unistd::Group::from_name(&g), Ok(Some(_))) {
                    errln!(
                        "{PROG}: warning: {shown}: no group {:?} on this host",
                        show(&g)
                    );
                }
            }
            Ok(Exit::Ok)
        }
        Err(e) => {
            errln!("{PROG}: {}", show(&e));
            outln!("{shown}: invalid");
            Ok(Exit::Other)
        }
    }
}
