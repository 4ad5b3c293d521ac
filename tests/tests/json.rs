//! `--json` of every command a script needs (docs/JSON.md): each prints one
//! object on stdout with a `schema` field, whose fields agree with what the
//! other commands and the files say; a failure prints no JSON and keeps
//! its one error line and exit code.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::fs;
use std::path::Path;

use ckpt_tests::{exit, path_str, user_dir, Counter, Env, Proc, Run, TestDir, Who};

fn parse(run: &Run) -> serde_json::Value {
    assert_eq!(
        run.stdout.lines().count(),
        1,
        "--json prints exactly one line on stdout\n{run}"
    );
    let v: serde_json::Value = serde_json::from_str(run.stdout.trim())
        .unwrap_or_else(|e| panic!("stdout is one JSON object ({e})\n{run}"));
    assert!(v.is_object(), "{run}");
    assert_eq!(v["schema"], 1, "every output has schema 1\n{run}");
    v
}

fn start_workload(env: &Env, dir: &TestDir) -> Counter {
    let wdir = user_dir(env, dir, "job");
    Counter::start(env, dir, Who::User(&env.user), &wdir, "job")
}

#[test]
fn dump_verify_inspect_explain_restore_agree_in_json() {
    let env = Env::require();
    let dir = TestDir::new(&env, "json");
    let (host_line, host_id) = env.host_key_id(&dir);
    let target = start_workload(&env, &dir);
    let pid = target.proc.pid;
    let image = dir.work.join("job.ckpt");

    // dump --json: the image id, size, signer, key id and notices.
    let run = env.sign(
        &dir,
        &[
            "dump",
            "--pid",
            &pid.to_string(),
            "-o",
            path_str(&image),
            "--leave-running",
            "--json",
        ],
    );
    run.assert_code(exit::OK, "dump --json");
    let d = parse(&run);
    assert!(
        !run.stderr.contains("wrote "),
        "with --json the wrote line is not printed\n{run}"
    );
    let size = fs::metadata(&image).unwrap().len();
    assert_eq!(d["image"], path_str(&image));
    assert_eq!(d["size"].as_u64(), Some(size));
    assert_eq!(d["signed"], true);
    assert_eq!(d["key_id"], host_id.as_str());
    assert_eq!(d["signer"], "host-key");
    assert_eq!(d["signed_with"], "file host key");
    assert_eq!(d["pid"], pid);
    assert_eq!(d["processes"], 1);
    assert_eq!(d["left_running"], true);
    assert!(d["notices"].is_array() && d["warnings"].is_array());
    let image_id = d["image_id"].as_str().unwrap().to_owned();
    assert_eq!(image_id.len(), 32);
    assert!(image_id.bytes().all(|b| b.is_ascii_hexdigit()));

    // verify --json: the same image id and key; the host key is trusted.
    let (run, v) = env.verify_json(&dir, &image);
    run.assert_code(exit::OK, "verify --json");
    assert_eq!(v["schema"], 1);
    assert_eq!(v["image_id"], image_id.as_str());
    assert_eq!(v["key_id"], host_id.as_str());
    assert_eq!(v["integrity"], "ok");
    assert_eq!(v["trusted"], true);

    // inspect --json: an untrusted view of the same image.
    let run = env.verify(&dir, &["inspect", "--json", path_str(&image)]);
    run.assert_code(exit::OK, "inspect --json");
    let i = parse(&run);
    assert_eq!(i["untrusted_view"], true);
    assert_eq!(i["image_id"], image_id.as_str());
    assert_eq!(i["key_id"], host_id.as_str());
    assert_eq!(i["process"]["pid"], pid);
    assert_eq!(i["requester"]["uid"], env.user.uid);

    // explain --json: a restore as the caller, nothing granted.
    let run = env.verify(&dir, &["explain", "--json", path_str(&image)]);
    run.assert_code(exit::OK, "explain --json");
    let e = parse(&run);
    assert_eq!(e["decision"], "restore-as-caller");
    assert_eq!(e["caller"]["uid"], env.user.uid);
    assert_eq!(e["grants"]["credentials"]["granted"], false);
    assert_eq!(e["restore"]["privileged"], false);

    // restore --json: the pid, grants (none) and notices, instead of the
    // pid line.
    drop(target);
    let run = env.verify(&dir, &["restore", "--json", path_str(&image)]);
    run.assert_code(exit::OK, "restore --json");
    let r = parse(&run);
    let new_pid = r["pid"].as_i64().unwrap() as i32;
    let _restored = Proc::adopt(new_pid, "restored counter").expect("the restored process runs");
    assert_eq!(r["image_id"], image_id.as_str());
    assert_eq!(r["key_id"], host_id.as_str());
    assert_eq!(r["trusted"], true);
    assert_eq!(r["saved_pid"], pid);
    assert_eq!(r["grants"], serde_json::json!([]));
    assert!(
        r["notices"].as_array().unwrap().iter().any(|n| n
            .as_str()
            .unwrap()
            .starts_with("restoring with your own credentials")),
        "the notices are in the JSON\n{run}"
    );
    assert!(
        !run.stderr.contains("notice:"),
        "with --json the notices are not repeated on stderr\n{run}"
    );

    // pubkey --json: the same key as the pubkey line.
    let run = env.sign(&dir, &["pubkey", "--json"]);
    run.assert_code(exit::OK, "pubkey --json");
    let k = parse(&run);
    assert_eq!(k["role"], "host");
    assert_eq!(k["algorithm"], "ed25519");
    assert_eq!(k["key_id"], host_id.as_str());
    assert_eq!(k["public_key"], host_line.as_str());
}

#[test]
fn policy_check_json_and_failures_print_no_json() {
    let env = Env::require();
    let dir = TestDir::new(&env, "json-policy");
    let good = dir.work.join("good.toml");
    let bad = dir.work.join("bad.toml");
    let owner = Some(&env.user);
    dir.file(
        &good,
        b"[[rule]]\nname = \"r1\"\nsigned_by = [\"this-host\"]\ncaller = [\"user:no-such-user-e2e\"]\ngrant = [\"same-pid\"]\n",
        0o644,
        owner,
    );
    dir.file(&bad, b"[[rule]]\nname = \"r1\"\ncolour = 1\n", 0o644, owner);

    let run = env.verify(&dir, &["policy", "check", "--json", path_str(&good)]);
    run.assert_code(exit::OK, "policy check --json of a good draft");
    let p = parse(&run);
    assert_eq!(p["valid"], true);
    assert_eq!(p["error"], serde_json::Value::Null);
    assert_eq!(p["rules"], serde_json::json!(["r1"]));
    assert_eq!(p["trusted_keys"], 0);
    assert!(
        p["warnings"].as_array().unwrap()[0]
            .as_str()
            .unwrap()
            .starts_with("no user \"no-such-user-e2e\" on this host"),
        "{run}"
    );

    let run = env.verify(&dir, &["policy", "check", "--json", path_str(&bad)]);
    run.assert_code(exit::OTHER, "policy check --json of a bad draft");
    let p = parse(&run);
    assert_eq!(p["valid"], false);
    let err = p["error"].as_str().unwrap();
    assert!(err.contains("colour"), "the error names the key: {err}");
    assert_eq!(p["rules"], serde_json::Value::Null);

    // A dump that fails prints no JSON, only its one error line.
    let img = dir.work.join("never.ckpt");
    let run = env.sign(
        &dir,
        &[
            "dump",
            "--pid",
            "2147483647",
            "-o",
            path_str(&img),
            "--json",
        ],
    );
    run.assert_code(exit::DUMP_FAILED, "dump --json of no process");
    assert_eq!(run.stdout, "", "{run}");
    assert!(
        run.stderr.lines().any(|l| l
            == "ckpt-sign: cannot dump pid 2147483647: no such process; check the pid \
                (`ps -p 2147483647`)"),
        "{run}"
    );
    assert!(!Path::new(&img).exists());
}
