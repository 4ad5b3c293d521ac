//! The caller-credential worker: one child, forked once, early, that
//! drops to exactly the caller's credentials like every as-caller child
//! and then runs [operations](super::op::Op) on request, one after the
//! other, until the helper closes its socket. A dump's four as-caller
//! steps then cost four round trips on a socket instead of four forks.
//!
//! Without a worker (never started, or started for other credentials)
//! every operation forks its own child as before; the operations and
//! their answers are the same either way.
//!
//! Owns: the worker process and its end of the socket pair, behind a
//! lock (one request at a time). Trusts: the worker's answers as much as
//! a forked child's (both hold exactly the caller's credentials, are not
//! dumpable, and hold no fd but their socket and the fds of the request
//! at hand); the caller may kill it, which fails the operation under way.

use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::Mutex;

use nix::errno::Errno;
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use nix::unistd::{Gid, Pid};

use super::op::{Op, REQUEST_MAX};
use super::{
    child_drop, encode, fork_for_caller, receive, recv_with_fds, send_answer, ChildFail,
    HelperError, Reply, RunError, CODE_BAD_REQUEST, STATUS_FAIL, STATUS_OK,
};
use crate::caller::Caller;

/// The running worker.
struct Worker {
    sock: OwnedFd,
    pid: Pid,
    /// The credentials it holds.
    uid: u32,
    gid: u32,
    groups: Vec<u32>,
}

static WORKER: Mutex<Option<Worker>> = Mutex::new(None);

fn is_for(w: &Worker, caller: &Caller) -> bool {
    w.uid == caller.uid && w.gid == caller.gid && w.groups == caller.groups
}

/// Fork the worker for `caller` (replacing none: a second start is a
/// no-op). Call it early, while the process is single-threaded and holds
/// nothing secret: the worker is a copy of the process as it is now.
pub fn start(caller: &Caller) -> Result<(), HelperError> {
    let mut slot = WORKER.lock().map_err(|_| HelperError::BadReply)?;
    if slot.is_some() {
        return Ok(());
    }
    let groups: Vec<Gid> = caller.groups.iter().map(|&g| Gid::from_raw(g)).collect();
    let child = fork_for_caller(&[], |sock| {
        // A process group of its own: a terminal's ^C or ^Z for the
        // helper's group does not reach the worker (the helper rolls back
        // on them at its own safe points, and still needs it).
        let _ = nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0));
        let ready = match child_drop(caller, &groups) {
            Ok(()) => encode(STATUS_OK, 0, 0, 0),
            Err(f) => encode(STATUS_FAIL, f.code, f.errno, f.value),
        };
        let dropped = ready[0..4] == STATUS_OK.to_ne_bytes();
        if sendmsg::<()>(sock, &[IoSlice::new(&ready)], &[], MsgFlags::empty(), None).is_err()
            || !dropped
        {
            return 1;
        }
        serve(sock);
        0
    })?;
    let worker = Worker {
        sock: child.sock,
        pid: child.pid,
        uid: caller.uid,
        gid: caller.gid,
        groups: caller.groups.clone(),
    };
    // The first message says whether the drop worked.
    let ready = match receive(&worker.sock) {
        Ok(Some(Ok(_))) => Ok(()),
        Ok(Some(Err(RunError::Helper(e)))) => Err(e),
        Ok(Some(Err(RunError::Op(_)))) => Err(HelperError::BadReply),
        Ok(None) => Err(HelperError::Died {
            status: "the caller-credential worker exited at start".into(),
        }),
        Err(e) => Err(e),
    };
    match ready {
        Ok(()) => {
            *slot = Some(worker);
            Ok(())
        }
        Err(e) => {
            end(worker);
            Err(e)
        }
    }
}

/// End the worker and reap it. Operations afterwards fork their own
/// children again.
pub fn stop() {
    let taken = WORKER.lock().ok().and_then(|mut slot| slot.take());
    if let Some(w) = taken {
        end(w);
    }
}

/// Close the worker's socket, kill it and reap it. Killed, not waited
/// for: the caller may have stopped it (`SIGSTOP`), and the helper must
/// not hang before its audit record. It is our unreaped child, so the pid
/// is still its own.
fn end(w: Worker) {
    drop(w.sock);
    let _ = nix::sys::signal::kill(w.pid, nix::sys::signal::Signal::SIGKILL);
    let _ = nix::sys::wait::waitpid(w.pid, None);
}

/// Run `op` in the worker when one runs for `caller`: `Some` of its
/// answer, or `None` (no worker for these credentials: the caller forks a
/// child instead).
pub(crate) fn call(
    caller: &Caller,
    op: &Op,
    fds: &[BorrowedFd<'_>],
) -> Option<Result<Reply, RunError>> {
    let mut slot = WORKER.lock().ok()?;
    let w = slot.as_ref().filter(|w| is_for(w, caller))?;
    let died = || {
        RunError::Helper(HelperError::Died {
            status: "the caller-credential worker is gone".into(),
        })
    };
    let Some(request) = op.encode() else {
        return Some(Err(RunError::Helper(HelperError::BadReply)));
    };
    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let cmsg = [ControlMessage::ScmRights(&raw)];
    let cmsgs: &[ControlMessage<'_>] = if raw.is_empty() { &[] } else { &cmsg };
    let sent = loop {
        match sendmsg::<()>(
            w.sock.as_raw_fd(),
            &[IoSlice::new(&request)],
            cmsgs,
            MsgFlags::empty(),
            None,
        ) {
            Err(Errno::EINTR) => continue,
            r => break r,
        }
    };
    let answer = match sent {
        Ok(_) => receive(&w.sock),
        Err(_) => Ok(None),
    };
    let result = match answer {
        Ok(Some(r)) => r,
        Ok(None) => Err(died()),
        Err(e) => Err(RunError::Helper(e)),
    };
    if matches!(result, Err(RunError::Helper(_))) {
        // Never trust a worker that failed once: later operations fork.
        if let Some(w) = slot.take() {
            end(w);
        }
    }
    Some(result)
}

/// In the worker: answer requests until the socket ends.
fn serve(sock: RawFd) {
    let mut buf = vec![0u8; REQUEST_MAX];
    loop {
        let Ok((bytes, fds, truncated)) = recv_with_fds(sock, &mut buf) else {
            return;
        };
        if bytes == 0 {
            return;
        }
        let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(|f| f.as_fd()).collect();
        let outcome = match buf.get(..bytes).and_then(Op::decode) {
            Some(op) if !truncated => op.run(&borrowed),
            _ => Err(ChildFail::new(CODE_BAD_REQUEST, Errno::EINVAL)),
        };
        let sent = send_answer(sock, &outcome);
        // The answer's fds are the helper's now; ours go.
        if let Ok(ok) = outcome {
            for fd in ok.fds {
                let _ = nix::unistd::close(fd);
            }
        }
        drop(borrowed);
        drop(fds);
        if sent.is_err() {
            return;
        }
    }
}
