//! Resources the engine cannot restore yet (children, network sockets,
//! devices, io_uring, userfaultfd, perf events, BPF objects, fanotify,
//! pidfds, namespaces of its own, a tracer) make dump refuse, naming the
//! resource, and leave the target running and untouched, with no image.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::fs;

use ckpt_tests::{path_str, wait_until, Env, Proc, TestDir, Who, WAIT};

fn refused(mode: &str, words: &[&str]) -> (String, Option<i32>) {
    refused_as(Who::User(&Env::require().user), mode, words)
}

/// [`refused`] for a workload run, and dumped, by `who` (root for what
/// needs a capability to create). Returns the refusal's stderr and the
/// pid the workload named on the second line of its ready file.
fn refused_as(who: Who, mode: &str, words: &[&str]) -> (String, Option<i32>) {
    let env = Env::require();
    let dir = TestDir::new(&env, &format!("unsupported-{mode}"));
    let program = dir.compile(&env, "unsupported");
    let ready = dir.work.join("ready");
    let mut p = Proc::spawn(
        &env,
        who,
        &program,
        &[mode, path_str(&ready)],
        &dir.work,
        &[],
        &dir.work.join("unsupported.log"),
    );
    wait_until(WAIT, "the workload is ready", || {
        fs::read_to_string(&ready).is_ok_and(|s| s.starts_with("ready\n"))
    });
    let child: Option<i32> = fs::read_to_string(&ready)
        .unwrap()
        .lines()
        .nth(1)
        .map(|c| c.parse().unwrap());
    if let Some(child) = child {
        p.kill_also(child);
    }
    let image = dir.work.join("u.ckpt");
    let run = env.sign_as(
        who,
        &dir,
        &["dump", "--pid", &p.pid.to_string(), "-o", path_str(&image)],
    );
    run.assert_refused(&format!("dump of a process holding a {mode}"));
    run.assert_code(
        ckpt_tests::exit::DUMP_FAILED,
        &format!("dump of a process holding a {mode} (SECURITY.md §6)"),
    );
    let msg = run.stderr.to_lowercase();
    assert!(
        words.iter().any(|w| msg.contains(&w.to_lowercase())),
        "the refusal must name the resource (one of {words:?})\n{run}"
    );
    assert!(!image.exists(), "refused dump left an image");
    if mode == "traced" {
        // Still running, still traced by its own tracer (not by the dump).
        let tracer = child.map(|c| c.to_string());
        assert!(p.is_alive(), "the traced workload is gone\n{run}");
        assert!(
            !matches!(p.state(), Some('t' | 'T')),
            "the traced workload is left stopped\n{run}"
        );
        let status = ckpt_tests::procfs::status(p.pid).expect("status");
        assert_eq!(
            status.get("TracerPid"),
            tracer.as_ref(),
            "still traced by its own tracer only\n{run}"
        );
    } else {
        p.assert_untouched(&format!("after a dump refused for a {mode}"));
    }
    (run.stderr.clone(), child)
}

// A pipe or unix socket whose other end another process holds is no
// longer refused: it is connected outside the image (pipes.rs,
// `a_pipe_whose_other_end_is_outside_is_dumped_as_external_naming_the_fd`
// and `a_socket_connected_outside_is_dumped_as_external_naming_the_fd`).

#[test]
fn dump_refuses_a_tcp_socket() {
    refused("socket", &["socket", "tcp"]);
}

#[test]
fn dump_refuses_a_child_process() {
    refused("child", &["child"]);
}

#[test]
fn dump_refuses_a_child_forked_by_another_thread() {
    // Listed in that thread's /proc/PID/task/TID/children, not the
    // leader's: the image would otherwise silently lack it.
    refused("threadchild", &["child process"]);
}

#[test]
fn dump_refuses_an_established_tcp_connection_naming_its_addresses() {
    refused("socket", &["tcp socket (local 127.0.0.1:"]);
    refused("socket", &["established"]);
}

/// UDP is restored (inet.rs); UDP-Lite is not, and is named with both
/// addresses.
#[test]
fn dump_refuses_a_udp_lite_socket_naming_both_addresses() {
    refused("udp", &["udp-lite socket (local 127.0.0.1:"]);
    refused("udp", &["peer 127.0.0.1:9"]);
}

#[test]
fn dump_refuses_a_netlink_socket() {
    refused("netlink", &["fd 3 (socket:[", "a netlink socket"]);
}

#[test]
fn dump_refuses_a_raw_ip_socket() {
    refused_as(Who::Root, "rawip", &["a raw ip socket"]);
}

#[test]
fn dump_refuses_a_packet_socket() {
    refused_as(Who::Root, "packet", &["a packet socket"]);
}

// A pseudo-terminal master, and a pair (the terminal side on fd 3, the
// master on fd 100), are no longer refused: they are restored
// (terminals.rs, `a_lone_locked_master_and_a_pair_above_fd_2_are_restored`,
// with this workload's `ptmx` and `pts` modes).

#[test]
fn dump_refuses_io_uring() {
    refused(
        "io_uring",
        &["fd 3 (anon_inode:[io_uring]), an io_uring instance"],
    );
}

#[test]
fn dump_refuses_a_userfaultfd() {
    refused("uffd", &["fd 3 (anon_inode:[userfaultfd]), a userfaultfd"]);
}

#[test]
fn dump_refuses_a_perf_event() {
    refused("perf", &["fd 3 (anon_inode:[perf_event]), a perf event"]);
}

#[test]
fn dump_refuses_a_bpf_map() {
    refused_as(Who::Root, "bpf", &["fd 3 (anon_inode:bpf-map), a bpf map"]);
}

#[test]
fn dump_refuses_a_fanotify_group() {
    refused(
        "fanotify",
        &["fd 3 (anon_inode:[fanotify]), a fanotify group"],
    );
}

#[test]
fn dump_refuses_a_pidfd() {
    refused("pidfd", &["fd 3 (anon_inode:[pidfd]), a pidfd"]);
}

#[test]
fn dump_refuses_a_mount_namespace_of_its_own() {
    refused("mntns", &["another mnt namespace"]);
}

#[test]
fn dump_refuses_a_network_namespace_of_its_own() {
    refused("netns", &["another net namespace"]);
}

#[test]
fn dump_refuses_a_process_traced_by_another() {
    // The tracer is the workload's child, whose pid the refusal names.
    let (stderr, tracer) = refused("traced", &["traced by another process (tracerpid "]);
    let tracer = tracer.expect("the workload names its tracer");
    assert!(
        stderr.contains(&format!("TracerPid {tracer})")),
        "the refusal names the tracer {tracer}\n{stderr}"
    );
}

#[test]
fn dump_refuses_seccomp_strict_mode() {
    refused("strict", &["seccomp strict mode"]);
}

#[test]
fn dump_refuses_a_seccomp_filter_with_a_supervisor() {
    refused("usernotif", &["seccomp_ret_user_notif"]);
}
