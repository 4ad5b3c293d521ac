//! `ckpt-verify explain IMAGE [--json]`: the restore decision for the
//! caller, and its reasons, without restoring.
//!
//! For each privilege: granted (the rule, where it is written, whether it
//! is one-shot) or not (the reason: a fact that refuses everything, the
//! first failing condition of the closest rule, or "no rule"); plus the
//! facts: signer, trust, attestation, caller, requester, mapping, target
//! credentials, executable, host, age, one-shot ledger; and what a restore
//! would do (`restore`). Exit 0 when a decision is explained, 4 for a
//! tampered image.

use std::path::Path;

use ckpt_core::restore::RestoreCredentials;
use ckpt_policy::{
    cap_mask_names, cap_mask_summary, decide, human_duration, Decision, Map, Mapped, Mapping,
    OneShot, Verdict,
};
use ckpt_privsep::report::Exit;
use ckpt_privsep::Caller;
use serde_json::{json, Value};

use crate::checked::{examine, one_shot_state, policy_facts, Facts, Integrity};
use crate::inspect::utc;
use crate::plan::{plan, show_creds, Plan};
use crate::verify::{facts_json, print_facts};
use crate::{hex, show, Fail};

fn map_json(m: &Map) -> Value {
    match m {
        Map::Identity => json!("identity"),
        Map::Ranges(r) => json!(r
            .iter()
            .map(|m| format!("{}:{}:{}", m.image, m.local, m.count))
            .collect::<Vec<_>>()),
    }
}

fn map_text(m: &Map) -> String {
    match m {
        Map::Identity => "identity".to_owned(),
        Map::Ranges(r) if r.is_empty() => "none".to_owned(),
        Map::Ranges(r) => r
            .iter()
            .map(|m| format!("{}:{}:{}", m.image, m.local, m.count))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

fn local(m: &Mapped) -> Value {
    json!(m.local)
}

fn creds_json(c: &RestoreCredentials) -> Value {
    json!({"uid": c.uid, "gid": c.gid, "groups": c.groups})
}

fn verdict_json(v: &Verdict) -> Value {
    match v {
        Verdict::Granted {
            rule,
            origin,
            one_shot,
        } => json!({
            "granted": true,
            "rule": rule,
            "origin": origin.to_string(),
            "one_shot": one_shot,
        }),
        Verdict::Denied {
            reason,
            condition,
            rule,
        } => json!({
            "granted": false,
            "condition": condition,
            "rule": rule,
            "reason": reason,
        }),
    }
}

fn one_shot_word(o: &OneShot) -> (&'static str, Option<&str>) {
    match o {
        OneShot::NotRestored => ("not-restored", None),
        OneShot::AlreadyRestored => ("already-restored", None),
        OneShot::Unavailable(why) => ("unavailable", Some(why.as_str())),
    }
}

fn decision_word(d: &Decision) -> &'static str {
    if d.grants().is_empty() {
        "restore-as-caller"
    } else {
        "restore-with-grants"
    }
}

pub(crate) fn explain(caller: &Caller, path: &Path, json: bool) -> Result<Exit, Fail> {
    let facts = examine(caller, path, true)?;
    let tampered = matches!(facts.integrity, Integrity::Tampered(_));
    let image_id = facts.image_id();
    let decided = match (&image_id, tampered) {
        (Some(id), false) => {
            let one_shot = one_shot_state(&facts, caller, id);
            policy_facts(&facts, caller, one_shot).map(|pf| {
                let d = decide(&facts.policy, &pf);
                let p = plan(&d, &pf, caller);
                (pf, d, p)
            })
        }
        _ => None,
    };
    if json {
        let mut m = facts_json(path, &facts);
        match &decided {
            None => {
                m.insert("decision".into(), json!("refuse"));
                m.insert("reason".into(), json!("the image is tampered or malformed"));
            }
            Some((pf, d, p)) => explain_json(&mut m, pf, d, p),
        }
        outln!("{}", Value::Object(m));
    } else {
        print_facts(path, &facts);
        match &decided {
            None => outln!("decision: refuse (the image is tampered or malformed)"),
            Some((pf, d, p)) => explain_text(&facts, pf, d, p),
        }
    }
    Ok(if decided.is_none() {
        Exit::Tampered
    } else {
        Exit::Ok
    })
}

fn explain_json(
    m: &mut serde_json::Map<String, Value>,
    f: &ckpt_policy::Facts,
    d: &Decision,
    p: &Plan,
) {
    let (word, detail) = one_shot_word(&f.one_shot);
    m.insert(
        "caller".into(),
        json!({"uid": f.caller.uid, "gid": f.caller.gid, "groups": f.caller.groups}),
    );
    m.insert(
        "mapping".into(),
        match &d.mapping {
            Mapping::None { reason } => json!({"key": null, "reason": reason}),
            Mapping::Key { key, uid, gid } => {
                json!({"key": key, "uid": map_json(uid), "gid": map_json(gid)})
            }
        },
    );
    let r = &d.requester;
    m.insert(
        "requester".into(),
        json!({
            "image": {"uid": f.requester.uid, "gid": f.requester.gid, "groups": f.requester.groups},
            "local": {"uid": local(&r.uid), "gid": local(&r.gid), "groups": r.groups.iter().map(local).collect::<Vec<_>>()},
            "unmapped": r.unmapped(),
        }),
    );
    let t = &d.target;
    let tc = &f.target;
    m.insert(
        "target".into(),
        json!({
            "image": {"uid": tc.uid, "gid": tc.gid, "groups": tc.groups},
            "local": d.local_target().map(|(uid, gid, groups)| json!({"uid": uid, "gid": gid, "groups": groups})),
            "unmapped": t.unmapped(),
            "capabilities": {
                "permitted": cap_mask_names(tc.cap_permitted),
                "effective": cap_mask_names(tc.cap_effective),
                "inheritable": cap_mask_names(tc.cap_inheritable),
                "ambient": cap_mask_names(tc.cap_ambient),
                "bounding": format!("{:#x}", tc.cap_bounding),
                "securebits": tc.securebits,
            },
        }),
    );
    m.insert(
        "exe".into(),
        json!({"path": f.exe.path, "digest": format!("{}:{}", f.exe.digest_algorithm, hex(&f.exe.digest))}),
    );
    m.insert(
        "host".into(),
        json!({"hostname": f.hostname, "machine_id": f.machine_id}),
    );
    m.insert(
        "freshness".into(),
        json!({
            "created_unix": f.created_unix,
            "now": f.now,
            "age_seconds": d.age,
            "one_shot": word,
            "one_shot_detail": detail,
        }),
    );
    let grants: serde_json::Map<String, Value> = d
        .verdicts
        .iter()
        .map(|(p, v)| (p.name().to_owned(), verdict_json(v)))
        .collect();
    m.insert("grants".into(), Value::Object(grants));
    m.insert("decision".into(), json!(decision_word(d)));
    let o = &p.opts;
    m.insert(
        "restore".into(),
        json!({
            "credentials": creds_json(&o.creds),
            "capabilities": o.caps.as_ref().map(|c| json!({
                "inheritable": format!("{:#x}", c.inheritable),
                "permitted": format!("{:#x}", c.permitted),
                "effective": format!("{:#x}", c.effective),
                "bounding": format!("{:#x}", c.bounding),
                "ambient": format!("{:#x}", c.ambient),
                "securebits": c.securebits,
            })),
            "file_credentials": creds_json(&o.file_creds),
            "same_pid": o.same_pid,
            "exe_link": o.exe_link,
            "privileged": o.privileged(),
        }),
    );
    m.insert("notices".into(), json!(p.notices));
}

fn ids_text(uid: &[Mapped], gid: &[Mapped], groups: &[Mapped]) -> String {
    let j = |v: &[Mapped], sep: &str| {
        v.iter()
            .map(|m| match m.local {
                Some(l) if l == m.image => l.to_string(),
                Some(l) => format!("{}→{l}", m.image),
                None => format!("{}→(unmapped)", m.image),
            })
            .collect::<Vec<_>>()
            .join(sep)
    };
    format!(
        "uid {} gid {} groups [{}]",
        j(uid, "/"),
        j(gid, "/"),
        j(groups, ", ")
    )
}

fn explain_text(facts: &Facts, f: &ckpt_policy::Facts, d: &Decision, p: &Plan) {
    if let Some(e) = &facts.policy_error {
        outln!("policy: unusable ({})", show(e));
    }
    let c = &f.caller;
    outln!("caller: uid {} gid {} groups {:?}", c.uid, c.gid, c.groups);
    match &d.mapping {
        Mapping::None { reason } => outln!("mapping: none ({})", show(reason)),
        Mapping::Key { key, uid, gid } => outln!(
            "mapping: key {:?}: uid {}; gid {}",
            show(key),
            map_text(uid),
            map_text(gid)
        ),
    }
    let r = &d.requester;
    outln!("requester: {}", ids_text(&[r.uid], &[r.gid], &r.groups));
    let t = &d.target;
    outln!("target: {}", ids_text(&t.uid, &t.gid, &t.groups));
    let tc = &f.target;
    outln!(
        "target capabilities: permitted [{}], effective [{}], ambient [{}], securebits {:#x}",
        cap_mask_summary(tc.cap_permitted),
        cap_mask_summary(tc.cap_effective),
        cap_mask_summary(tc.cap_ambient),
        tc.securebits
    );
    outln!(
        "executable: {} ({}:{})",
        show(&f.exe.path),
        f.exe.digest_algorithm,
        hex(&f.exe.digest)
    );
    outln!(
        "host: {} (machine id {})",
        show(&f.hostname),
        show(&f.machine_id)
    );
    outln!(
        "created: {} ({} ago)",
        utc(f.created_unix),
        human_duration(d.age)
    );
    match &f.one_shot {
        OneShot::NotRestored => outln!("one-shot: not restored before"),
        OneShot::AlreadyRestored => outln!("one-shot: already restored"),
        OneShot::Unavailable(why) => outln!("one-shot: ledger unavailable ({})", show(why)),
    }
    outln!(
        "decision: {}",
        if d.grants().is_empty() {
            "restore with your own credentials"
        } else {
            "restore with grants"
        }
    );
    for (priv_, v) in &d.verdicts {
        match v {
            Verdict::Granted {
                rule,
                origin,
                one_shot,
            } => outln!(
                "  {}: granted by rule {:?} ({}{})",
                priv_.name(),
                show(rule),
                show(&origin.to_string()),
                if *one_shot { ", one-shot" } else { "" }
            ),
            Verdict::Denied { reason, .. } => {
                outln!("  {}: not granted: {}", priv_.name(), show(reason))
            }
        }
    }
    let o = &p.opts;
    outln!("restore:");
    outln!("  credentials: {}", show_creds(&o.creds));
    match &o.caps {
        None => outln!("  capabilities: none"),
        Some(c) => outln!(
            "  capabilities: permitted [{}], effective [{}], ambient [{}], bounding [{}], securebits {:#x}",
            cap_mask_summary(c.permitted),
            cap_mask_summary(c.effective),
            cap_mask_summary(c.ambient),
            cap_mask_summary(c.bounding),
            c.securebits
        ),
    }
    outln!("  files opened with: {}", show_creds(&o.file_creds));
    outln!(
        "  pid: {}",
        if o.same_pid {
            "the original pid"
        } else {
            "a new pid"
        }
    );
    outln!(
        "  exe link: {}",
        if o.exe_link {
            "the original executable"
        } else {
            "only if you may run the executable unchanged"
        }
    );
    outln!(
        "  privileged build: {}",
        if o.privileged() {
            "yes (more than you hold; every mapped file is checked against its signed digest \
             and must not be writable by you)"
        } else if !o.is_plain() {
            "no (nothing more than you hold; built as root, every mapped file is checked \
             against its signed digest)"
        } else {
            "no"
        }
    );
}
