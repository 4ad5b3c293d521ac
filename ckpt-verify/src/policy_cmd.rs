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

/// The error chain on one line (the TOML parser's messages have line
/// breaks; the helpers' errors are one line).
fn one_line(e: &dyn std::error::Error) -> String {
    error_chain(e)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

fn summary(p: &Policy) -> String {
    format!(
        "{} trusted keys, {} revoked, {} rules",
        p.keys.len(),
        p.revoked.len(),
        p.rules.len()
    )
}

/// `policy check --json`: one object (docs/JSON.md, "ckpt-verify policy
/// check").
fn check_json(shown: &str, result: &Result<Policy, String>, warnings: &[String]) -> String {
    let p = result.as_ref().ok();
    serde_json::json!({
        "schema": 1,
        "policy": shown,
        "valid": p.is_some(),
        "error": result.as_ref().err(),
        "trusted_keys": p.map(|p| p.keys.len()),
        "revoked": p.map(|p| p.revoked.len()),
        "rules": p.map(|p| p.rules.iter().map(|r| r.name.clone()).collect::<Vec<_>>()),
        "warnings": warnings,
    })
    .to_string()
}

pub(crate) fn check(caller: &Caller, file: Option<&Path>, json: bool) -> Result<Exit, Fail> {
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
                    Ok(text) => ckpt_policy::parse_str(&text, path).map_err(|e| one_line(&e)),
                    Err(_) => Err("not UTF-8 text".to_owned()),
                }
            };
            (path.to_path_buf(), result)
        }
        None => {
            let path = ckpt_core::paths::policy_file();
            let result = ckpt_policy::load(&path, Some(&ckpt_core::paths::policy_dropin_dir()))
                .map_err(|e| one_line(&e));
            (path, result)
        }
    };
    let shown = show(&shown.to_string_lossy());
    // Names are resolved at restore time; say which do not resolve now (a
    // typo would silently never match).
    let mut warnings = Vec::new();
    if let Ok(p) = &result {
        let (users, groups) = p.names();
        for u in users {
            if !matches!(nix::unistd::User::from_name(&u), Ok(Some(_))) {
                warnings.push(format!(
                    "no user {:?} on this host; a rule naming it never matches until it exists",
                    show(&u)
                ));
            }
        }
        for g in groups {
            if !matches!(nix::unistd::Group::from_name(&g), Ok(Some(_))) {
                warnings.push(format!(
                    "no group {:?} on this host; a rule naming it never matches until it exists",
                    show(&g)
                ));
            }
        }
    }
    if json {
        outln!("{}", check_json(&shown, &result, &warnings));
    }
    match result {
        Ok(p) => {
            if !json {
                outln!("{shown}: OK ({})", summary(&p));
            }
            for w in &warnings {
                errln!("{PROG}: warning: {shown}: {w}");
            }
            Ok(Exit::Ok)
        }
        Err(e) => {
            errln!("{PROG}: {}", show(&e));
            if !json {
                outln!("{shown}: invalid");
            }
            Ok(Exit::Other)
        }
    }
}
