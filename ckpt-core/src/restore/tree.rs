//! Restoring the image's processes as a tree: the same parents, process
//! groups and sessions (relative to each other), zombies, stopped
//! processes.
//!
//! The order: the root's stub is created ([`spawn_stub`]) and emptied
//! ([`Builder::blank`]); then, parents before children, each process forks
//! its children (an injected `clone` with `CLONE_PTRACE`, so each child is
//! traced by the restorer from its first instruction, `PTRACE_O_EXITKILL`
//! included), which are blank stubs too and are emptied in turn. A child
//! that was a session leader calls `setsid`, one that led its process
//! group `setpgid(0, 0)`, and one in another member's group joins it. A
//! zombie is forked the same way and exits at once with its saved status,
//! and its parent's stub drops the `SIGCHLD` that caused. Only then is
//! each process filled, in the image's order, sharing descriptions
//! through the restorer ([`super::transfer`]): its mappings
//! ([`Builder::fill_before_memory`]); its memory, by a fill thread on the
//! restorer's other CPU while this thread goes on with the next process's
//! mappings; then, once its memory is in, the rest
//! ([`Builder::fill_after_memory`]: protections, files, credentials,
//! ...). No process runs, and none gets its protections or credentials,
//! before its memory is complete. With
//! `same-pid`, the root gets its pid through `clone3(set_tid)` and every
//! other process through `ns_last_pid` (as for threads), each checked.
//!
//! The root's session is new in every restore (the tree is detached from
//! the caller's terminal); a process whose group or session led outside the
//! image joins the root's. If anything fails, every stub is killed: the
//! tree is either fully restored or not there at all.
//!
//! Owns: the stubs until release. Trusts: the image's validation (parents
//! come before their children, pids are unique).

use std::collections::HashMap;
use std::sync::mpsc;

use nix::unistd::Pid;

use super::mm::MemoryFill;
use super::pidns::PidNamespace;
use super::plan::Plan;
use super::stub::{spawn_stub, Stub, StubMode};
use super::transfer::Shared;
use super::{cstring, Blank, Builder, Parked, Release, RestoreError, RestoreOptions, Restored};
use crate::image::{ImageReader, Manifest};
use crate::inject::Injector;
use crate::model::{ProcessState, Zombie};
use crate::ptrace::Tracee;
use crate::sys;

/// Where each task of the image goes.
struct Shape {
    /// Task index -> its parent's task index (`None` for the root).
    parent: Vec<Option<usize>>,
}

impl Shape {
    fn of(m: &Manifest) -> Result<Shape, RestoreError> {
        let index: HashMap<i32, usize> = m
            .tasks
            .iter()
            .enumerate()
            .map(|(i, p)| (p.pid, i))
            .collect();
        let mut parent = vec![None];
        for (i, p) in m.tasks.iter().enumerate().skip(1) {
            match index.get(&p.ppid) {
                Some(&j) if j < i => parent.push(Some(j)),
                _ => {
                    return Err(RestoreError::Invalid(format!(
                        "task {i} (pid {}): its parent {} is not an earlier task",
                        p.pid, p.ppid
                    )))
                }
            }
        }
        for z in &m.zombies {
            if !index.contains_key(&z.ppid) {
                return Err(RestoreError::Invalid(format!(
                    "zombie {}: its parent {} is not a task",
                    z.pid, z.ppid
                )));
            }
        }
        Ok(Shape { parent })
    }

    fn children(&self, of: usize) -> impl Iterator<Item = usize> + '_ {
        self.parent
            .iter()
            .enumerate()
            .filter(move |(_, p)| **p == Some(of))
            .map(|(i, _)| i)
    }
}

/// The stubs of the tree while it is built.
struct Stubs {
    /// By task index.
    tasks: Vec<Option<Stub>>,
    /// Old pid -> new pid, for every process made so far (zombies too).
    pids: HashMap<i32, i32>,
}

impl Stubs {
    /// Kill every stub (children first) and reap them.
    fn kill(self) {
        for s in self.tasks.into_iter().rev().flatten() {
            s.kill();
        }
    }
}

pub(super) fn restore_tree(
    reader: &ImageReader,
    opts: &RestoreOptions,
    release: &mut dyn Release,
) -> Result<Restored, RestoreError> {
    if !opts.pid_namespace {
        return build_tree(reader, opts, release, None);
    }
    if !opts.is_plain() {
        return Err(RestoreError::Unsupported(
            "a pid namespace for a restore with other credentials than yours".into(),
        ));
    }
    if release.cancelled() {
        return Err(RestoreError::CalledOff { pid: 0 });
    }
    let ns = PidNamespace::create(&opts.creds)?;
    match build_tree(reader, opts, release, Some(&ns)) {
        Ok(restored) => {
            let root = reader.manifest().tasks.first().map_or(0, |t| t.pid);
            ns.release(root);
            Ok(restored)
        }
        Err(e) => {
            ns.kill();
            Err(e)
        }
    }
}

/// [`restore_tree`], in the pid namespace `pidns` if there is one.
fn build_tree(
    reader: &ImageReader,
    opts: &RestoreOptions,
    release: &mut dyn Release,
    pidns: Option<&PidNamespace>,
) -> Result<Restored, RestoreError> {
    let m = reader.manifest();
    Plan::check_image(m)?;
    let shape = Shape::of(m)?;
    let plans = (0..m.tasks.len())
        .map(|i| Plan::for_task(m, i))
        .collect::<Result<Vec<_>, _>>()?;
    let root = &m.tasks[0];
    let mode = if opts.is_plain() {
        StubMode::Final
    } else {
        StubMode::Root
    };
    // Every process gets the decided credentials, and the decided
    // capabilities when there are any (granted, or root's own, which a
    // root caller's plain restore holds as exec gives them): a tree whose
    // processes had different ones is refused rather than given the
    // root's (a child that had dropped capabilities or changed its ids
    // must not get the root's back). An unprivileged caller's plain
    // restore makes every process the caller, who holds nothing more.
    let root_caller = mode == StubMode::Final && opts.caller_caps != 0;
    if mode == StubMode::Root || root_caller {
        let holds_caps = opts.caps.is_some() || root_caller;
        let caps = |c: &crate::model::Credentials| {
            (
                c.cap_inheritable,
                c.cap_permitted,
                c.cap_effective,
                c.cap_bounding,
                c.cap_ambient,
                c.securebits,
            )
        };
        if let Some(p) = m.tasks.iter().find(|p| {
            p.creds.uid != root.creds.uid
                || p.creds.gid != root.creds.gid
                || p.creds.groups != root.creds.groups
                || (holds_caps && caps(&p.creds) != caps(&root.creds))
        }) {
            let how = if root_caller {
                "root's own credentials"
            } else {
                "granted credentials"
            };
            return Err(RestoreError::Unsupported(format!(
                "{how} for a tree whose processes had different ones (pid {}'s \
                 ids or capabilities differ from pid {}'s, and every process would get pid {}'s); \
                 restore it with your own credentials",
                p.pid, root.pid, root.pid
            )));
        }
    }
    let exe_path = cstring(&root.exe.path)?;
    let want_pid = opts.keeps_pids().then_some(root.pid);
    if release.cancelled() {
        return Err(RestoreError::CalledOff { pid: 0 });
    }
    let mut shared = Shared::new(m)?;
    // On one CPU for the build (each stub inherits it and gives itself
    // the restorer's mask back); the restorer's comes back when this
    // returns.
    let pinned = super::affinity::Pinned::here();
    let stub = spawn_stub(
        &exe_path,
        &opts.creds,
        mode,
        want_pid,
        &opts.inherit_fds,
        shared.stub_end(),
        pidns,
    )?;
    shared.stub_created();
    let pid = stub.pid();
    let mut notices = Vec::new();
    if let Some(ns) = pidns {
        notices.push(format!(
            "restored in a new pid namespace, where every process keeps its pid \
             (the root is pid {} there, pid {pid} outside it); its init (pid 1 \
             there) is pid {} outside it, and /proc there shows that namespace",
            root.pid,
            ns.keeper_pid()
        ));
    } else if !opts.same_pid && pid != root.pid {
        notices.push(format!(
            "the process gets a new pid {pid} (it was {})",
            root.pid
        ));
    }
    if mode == StubMode::Root && !opts.exe_link {
        notices.push(format!(
            "/proc/{pid}/exe will not name {} (no exe-link grant)",
            root.exe.path
        ));
    } else if mode == StubMode::Final && !stub.exec {
        notices.push(format!(
            "{} cannot be executed with your credentials without changing them (set-id or file capabilities), or is gone: /proc/{}/exe will not name it",
            root.exe.path,
            stub.pid()
        ));
    }
    let mut tasks: Vec<Option<Stub>> = (0..m.tasks.len()).map(|_| None).collect();
    let stub_ns_pid = stub.ns_pid;
    tasks[0] = Some(stub);
    let mut stubs = Stubs {
        tasks,
        pids: HashMap::from([(root.pid, stub_ns_pid)]),
    };
    let ctx = Ctx {
        reader,
        m,
        opts,
        mode,
        plans: &plans,
        shape: &shape,
        digests: super::mm::FileDigests::new(opts.digest_cache.as_deref()),
        pidns,
        pinned: pinned.as_ref(),
    };
    match ctx.build(&mut stubs, &mut shared, &mut notices) {
        Ok(()) => ctx.digests.save(),
        Err(e) => {
            stubs.kill();
            return Err(e);
        }
    }
    let restored = Restored {
        pid,
        notices,
        pid_namespace: pidns.map(|ns| super::NamespacePids {
            root: root.pid,
            init: ns.keeper_pid(),
        }),
    };
    if release.cancelled() || !release.before_release(&restored) {
        stubs.kill();
        return Err(RestoreError::CalledOff { pid });
    }
    release_all(stubs, m)?;
    Ok(restored)
}

/// A process between the steps before its memory fill and those after.
struct Filling {
    task: usize,
    /// Its builder's state, until the steps after the fill.
    parked: Parked,
    /// Whether its fill was given to the fill thread (else it had no
    /// memory to fill, or the caller ran it).
    sent: bool,
}

/// Waits for `f`'s fill when the fill thread has it: the thread answers
/// in the order it was given the jobs, so the next result is `f`'s.
fn filled(
    f: &Filling,
    results: &mpsc::Receiver<Result<(), RestoreError>>,
) -> Result<(), RestoreError> {
    if f.sent {
        results
            .recv()
            .map_err(|_| RestoreError::Invalid("the fill thread is gone".into()))??;
    }
    Ok(())
}

/// The fill thread's stack: it streams memory through a heap buffer and
/// needs little of its own.
const FILL_THREAD_STACK: usize = 256 << 10;

fn stub_of(stubs: &mut Stubs, i: usize) -> Result<&mut Stub, RestoreError> {
    stubs
        .tasks
        .get_mut(i)
        .and_then(Option::as_mut)
        .ok_or_else(|| RestoreError::Invalid(format!("task {i} was never created")))
}

/// What every step of the build reads.
struct Ctx<'a> {
    reader: &'a ImageReader,
    m: &'a Manifest,
    opts: &'a RestoreOptions,
    mode: StubMode,
    plans: &'a [Plan<'a>],
    shape: &'a Shape,
    /// Shared by every process's check of its mapped files.
    digests: super::mm::FileDigests,
    /// The pid namespace restored into, if a new one.
    pidns: Option<&'a PidNamespace>,
    /// The restorer's pin for the build.
    pinned: Option<&'a super::affinity::Pinned>,
}

impl Ctx<'_> {
    fn builder<'b>(
        &'b self,
        stub: &'b mut Stub,
        task: usize,
        shared: &'b mut Shared,
    ) -> Builder<'b> {
        let Stub {
            tracee,
            pidfd,
            exec_dispositions,
            ns_pid,
            ..
        } = stub;
        Builder {
            inj: Injector::new(tracee),
            pidfd,
            m: self.m,
            p: &self.m.tasks[task],
            memory: self.plans[task].memory_space,
            notices: Vec::new(),
            opts: self.opts,
            mode: self.mode,
            exe_fd: None,
            prepared: Vec::new(),
            saved_fds: Vec::new(),
            threads: Vec::new(),
            tid_map: Vec::new(),
            task,
            shared,
            exec_dispositions: *exec_dispositions,
            digests: &self.digests,
            ns_pid: *ns_pid,
            pidns: self.pidns,
            pinned: self.pinned,
        }
    }

    fn build(
        &self,
        stubs: &mut Stubs,
        shared: &mut Shared,
        notices: &mut Vec<String>,
    ) -> Result<(), RestoreError> {
        let n = self.m.tasks.len();
        // Blank stubs, parents first; each forks its children.
        let mut blanks: Vec<Blank> = Vec::with_capacity(n);
        for i in 0..n {
            let mut stub = stubs.tasks[i]
                .take()
                .ok_or_else(|| RestoreError::Invalid(format!("task {i} was never created")))?;
            let r = self.blank_and_fork(i, &mut stub, stubs, shared, notices);
            stubs.tasks[i] = Some(stub);
            blanks.push(r?);
        }
        // Then each is filled, in order: its memory on a thread of its own
        // while this one goes on to the next process's mappings and then
        // finishes this one (protections, files, credentials, ...) once
        // its memory is in.
        if n == 1 {
            // A process alone has nothing to overlap its fill with.
            let (filling, fill) = self.before_memory(0, &blanks, stubs, shared, notices)?;
            fill.run()?;
            return self.finish(filling, &blanks, stubs, shared, notices);
        }
        std::thread::scope(|scope| {
            // One thread fills every process's memory, in order, on the
            // restorer's other CPU(s); each result comes back in order.
            let (jobs, to_fill) = mpsc::channel::<MemoryFill<'_>>();
            let (filled, results) = mpsc::channel::<Result<(), RestoreError>>();
            let pinned = self.pinned;
            let worker = std::thread::Builder::new()
                .name("fill".into())
                .stack_size(FILL_THREAD_STACK)
                .spawn_scoped(scope, move || {
                    if let Some(p) = pinned {
                        p.elsewhere();
                    }
                    for job in to_fill {
                        if filled.send(job.run()).is_err() {
                            break;
                        }
                    }
                })
                .map_err(|e| RestoreError::Invalid(format!("cannot start a fill thread: {e}")))?;
            let built = self.build_pipelined(&jobs, &results, &blanks, stubs, shared, notices);
            // The thread ends once it has no more jobs to take (a fill
            // under way is finished first), and is joined here whatever
            // happened.
            drop(jobs);
            let joined = worker
                .join()
                .map_err(|_| RestoreError::Invalid("the fill thread panicked".into()));
            built.and(joined)
        })
    }

    /// The fill loop of [`Ctx::build`]: each process through the steps
    /// before its memory, its memory handed to the fill thread (`jobs`),
    /// then the process before it finished once its fill is back
    /// (`results`).
    fn build_pipelined<'s>(
        &'s self,
        jobs: &mpsc::Sender<MemoryFill<'s>>,
        results: &mpsc::Receiver<Result<(), RestoreError>>,
        blanks: &[Blank],
        stubs: &mut Stubs,
        shared: &mut Shared,
        notices: &mut Vec<String>,
    ) -> Result<(), RestoreError> {
        let mut filling: Option<Filling> = None;
        for i in 0..blanks.len() {
            // A process that shares its parent's fd table must not get
            // its saved files in that table before the parent's fds are in
            // place: everything before it is finished first.
            if self.m.tasks[i].fds_of_parent {
                if let Some(f) = filling.take() {
                    filled(&f, results)?;
                    self.finish(f, blanks, stubs, shared, notices)?;
                }
            }
            let (mut next, fill) = self.before_memory(i, blanks, stubs, shared, notices)?;
            if fill.memory.is_some() {
                jobs.send(fill)
                    .map_err(|_| RestoreError::Invalid("the fill thread is gone".into()))?;
                next.sent = true;
            }
            if let Some(f) = filling.take() {
                filled(&f, results)?;
                self.finish(f, blanks, stubs, shared, notices)?;
            }
            filling = Some(next);
        }
        match filling {
            Some(f) => {
                filled(&f, results)?;
                self.finish(f, blanks, stubs, shared, notices)
            }
            None => Ok(()),
        }
    }

    /// Process `i` through the steps before its memory fill; what its
    /// fill needs.
    fn before_memory<'s>(
        &'s self,
        i: usize,
        blanks: &[Blank],
        stubs: &mut Stubs,
        shared: &mut Shared,
        notices: &mut Vec<String>,
    ) -> Result<(Filling, MemoryFill<'s>), RestoreError> {
        let blank = blanks
            .get(i)
            .ok_or_else(|| RestoreError::Invalid(format!("task {i} was never emptied")))?;
        let stub = stub_of(stubs, i)?;
        let mut b = self.builder(stub, i, shared);
        let r = b.fill_before_memory(self.reader, blank);
        let parked = b.park();
        let fill = MemoryFill {
            reader: self.reader,
            m: self.m,
            memory: b.memory,
            pid: b.pid(),
            pinned: self.pinned,
        };
        notices.append(&mut b.notices);
        drop(b);
        r?;
        Ok((
            Filling {
                task: i,
                parked,
                sent: false,
            },
            fill,
        ))
    }

    /// Takes process `f.task`, whose memory is filled, through the rest of
    /// its build.
    fn finish(
        &self,
        f: Filling,
        blanks: &[Blank],
        stubs: &mut Stubs,
        shared: &mut Shared,
        notices: &mut Vec<String>,
    ) -> Result<(), RestoreError> {
        let i = f.task;
        let blank = blanks
            .get(i)
            .ok_or_else(|| RestoreError::Invalid(format!("task {i} was never emptied")))?;
        let stub = stub_of(stubs, i)?;
        let mut b = self.builder(stub, i, shared);
        b.unpark(f.parked);
        let r = b.fill_after_memory(&self.plans[i], blank);
        let threads = std::mem::take(&mut b.threads);
        notices.append(&mut b.notices);
        drop(b);
        stub.threads = threads;
        r
    }

    /// Empty task `i`'s stub, then fork its children and zombies from it.
    fn blank_and_fork(
        &self,
        i: usize,
        stub: &mut Stub,
        stubs: &mut Stubs,
        shared: &mut Shared,
        notices: &mut Vec<String>,
    ) -> Result<Blank, RestoreError> {
        let p = &self.m.tasks[i];
        let mut b = self.builder(stub, i, shared);
        let blank = b.blank(&self.plans[i])?;
        if i == 0 {
            b.move_transport(self.transport_number())?;
        }
        let children: Vec<usize> = self.shape.children(i).collect();
        let zombies: Vec<&Zombie> = self.m.zombies.iter().filter(|z| z.ppid == p.pid).collect();
        for c in children {
            let child = &self.m.tasks[c];
            let mut s = b.fork_child(blank.tramp, child.pid, child.fds_of_parent)?;
            stubs.pids.insert(child.pid, s.ns_pid);
            let r = join_groups(
                &mut s,
                blank.tramp,
                child.pid,
                child.pgid,
                child.sid,
                self.m,
                stubs,
            );
            let new = s.ns_pid;
            stubs.tasks[c] = Some(s);
            r?;
            if new != child.pid && !self.opts.keeps_pids() {
                notices.push(format!(
                    "process {} (child of {}) gets a new pid {new}",
                    child.pid, p.pid
                ));
            }
            if child.exe.path != p.exe.path {
                let stub = stubs.tasks[c]
                    .as_mut()
                    .ok_or_else(|| RestoreError::Invalid(format!("task {c} was never created")))?;
                // exec would give a child sharing its parent's fd table a
                // copy of its own.
                let execd = self.mode == StubMode::Final
                    && !child.fds_of_parent
                    && exec_own_exe(stub, blank.tramp, &child.exe.path)?;
                if !execd {
                    notices.push(format!(
                        "/proc/{new}/exe will name {} (its parent's), not {}",
                        p.exe.path, child.exe.path
                    ));
                }
            }
        }
        for z in &zombies {
            // A zombie left in the group of a process that is gone (its
            // leader exited and was reaped): with same-pid, a stand-in with
            // the leader's pid makes the group, the zombie joins it, and
            // the stand-in exits and is reaped by this parent.
            let stand_in = if self.opts.keeps_pids()
                && z.pgid != z.pid
                && z.sid == p.sid
                && !stubs.pids.contains_key(&z.pgid)
                && self.m.zombies.iter().all(|o| o.pid != z.pgid)
                && z.pgid != self.m.tasks[0].pgid
            {
                let mut s = b.fork_child(blank.tramp, z.pgid, false)?;
                let made = join_groups(&mut s, blank.tramp, z.pgid, z.pgid, z.sid, self.m, stubs);
                stubs.pids.insert(z.pgid, s.ns_pid);
                made.map(|()| Some(s))?
            } else {
                None
            };
            let mut s = b.fork_child(blank.tramp, z.pid, false)?;
            stubs.pids.insert(z.pid, s.ns_pid);
            let r = join_groups(&mut s, blank.tramp, z.pid, z.pgid, z.sid, self.m, stubs)
                .and_then(|()| exit_as_zombie(s, blank.tramp, z, self.pinned));
            r?;
            if let Some(h) = stand_in {
                let gone = Zombie {
                    pid: z.pgid,
                    ppid: p.pid,
                    pgid: z.pgid,
                    sid: z.sid,
                    exit_status: 0,
                    comm: String::new(),
                };
                let hpid = h.ns_pid;
                exit_as_zombie(h, blank.tramp, &gone, self.pinned)?;
                b.sys_raw(
                    libc::SYS_wait4,
                    [hpid as u64, 0, libc::__WALL as u64, 0, 0, 0],
                )?;
                stubs.pids.remove(&z.pgid);
            }
        }
        if !zombies.is_empty() {
            b.drop_sigchld()?;
        }
        notices.append(&mut b.notices);
        Ok(blank)
    }

    /// Above every fd number any process of the image restores (and every
    /// number an epoll entry was added under).
    fn transport_number(&self) -> u64 {
        let top = self
            .m
            .tasks
            .iter()
            .flat_map(|p| p.fds.iter().map(|f| f.fd))
            .chain(self.m.files.iter().flat_map(|d| match &d.kind {
                crate::model::OpenFileKind::Epoll { targets } => {
                    targets.iter().map(|t| t.fd).collect()
                }
                _ => Vec::new(),
            }))
            .max()
            .unwrap_or(2);
        u64::try_from(top).unwrap_or(0) + 1
    }
}

/// Put a freshly forked child in its session and process group, relative
/// to the others: a session leader of the image calls `setsid`, a group
/// leader `setpgid(0, 0)`, a member of a group whose leader the image has
/// joins it; anything else stays in its parent's (the root's session).
fn join_groups(
    s: &mut Stub,
    tramp: u64,
    old_pid: i32,
    pgid: i32,
    sid: i32,
    m: &Manifest,
    stubs: &Stubs,
) -> Result<(), RestoreError> {
    let mut inj = Injector::new(&mut s.tracee);
    inj.use_scratch(tramp + super::mm::PAGE, super::mm::PAGE);
    if sid == old_pid {
        inj.syscall("setsid", libc::SYS_setsid, [0; 6])?;
    }
    let root_pgid = m.tasks.first().map_or(0, |r| r.pgid);
    let target = if pgid == old_pid {
        Some(0)
    } else if let Some(&leader) = stubs.pids.get(&pgid) {
        Some(leader)
    } else if pgid == root_pgid {
        stubs.pids.get(&m.tasks[0].pid).copied()
    } else {
        None
    };
    if let Some(g) = target {
        // EPERM: the group is in another session now (its leader's
        // session was not the image's); it keeps its parent's group.
        let _ = inj.syscall_raw(libc::SYS_setpgid, [0, g as u64, 0, 0, 0, 0])?;
    }
    Ok(())
}

/// Make the blank child `s` exit the way zombie `z` did: with its exit
/// code, or killed by its signal (without a core dump). The restorer, its
/// tracer, collects the exit; it then waits as a zombie for its parent.
/// First it takes back the restorer's CPU mask (`pinned`), which its
/// entry in /proc shows.
fn exit_as_zombie(
    mut s: Stub,
    tramp: u64,
    z: &Zombie,
    pinned: Option<&super::affinity::Pinned>,
) -> Result<(), RestoreError> {
    let pid = s.pid();
    let status = z.exit_status;
    let signal = status & 0x7f;
    {
        let mut inj = Injector::new(&mut s.tracee);
        inj.use_scratch(tramp + super::mm::PAGE, super::mm::PAGE);
        if let Some(p) = pinned {
            // Best effort, as for a live process (a notice there; a
            // zombie has no one to tell).
            p.give_back(&mut inj)?;
        }
        // Its name, which its parent and `ps` see while it waits.
        if !z.comm.is_empty() {
            let comm: String = z.comm.chars().take(15).collect();
            super::files::check_path(&comm)?;
            let name = inj.put_cstr(&comm, "a zombie's name")?;
            inj.syscall(
                "prctl(PR_SET_NAME)",
                libc::SYS_prctl,
                [libc::PR_SET_NAME as u64, name, 0, 0, 0, 0],
            )?;
        }
        if signal == 0 {
            let code = (status >> 8) & 0xff;
            let tr = inj.tracee();
            let mut regs = tr
                .regs()
                .map_err(|source| RestoreError::Trace { pid, source })?;
            regs.rip = tramp;
            regs.rax = libc::SYS_exit_group as u64;
            regs.rdi = code as u64;
            regs.orig_rax = u64::MAX;
            tr.set_regs(&regs)
                .map_err(|source| RestoreError::Trace { pid, source })?;
        } else {
            // Default action (SIGKILL and SIGSTOP have no other), no core
            // file, unblocked; then sent to itself.
            if signal != libc::SIGKILL && signal != libc::SIGSTOP {
                let act = inj.put_bytes(&[0u8; 32], "a default sigaction")?;
                inj.syscall(
                    "rt_sigaction",
                    libc::SYS_rt_sigaction,
                    [signal as u64, act, 0, 8, 0, 0],
                )?;
            }
            let zero = inj.put_bytes(&[0u8; 16], "an rlimit")?;
            inj.syscall(
                "prlimit64(RLIMIT_CORE)",
                libc::SYS_prlimit64,
                [0, libc::RLIMIT_CORE as u64, zero, 0, 0, 0],
            )?;
            let mask = inj.put_bytes(&(1u64 << (signal - 1)).to_ne_bytes(), "a sigset")?;
            inj.syscall(
                "rt_sigprocmask",
                libc::SYS_rt_sigprocmask,
                [libc::SIG_UNBLOCK as u64, mask, 0, 8, 0, 0],
            )?;
        }
    }
    let npid = Pid::from_raw(pid);
    let deliver = (signal != 0)
        .then(|| nix::sys::signal::Signal::try_from(signal).ok())
        .flatten();
    if signal != 0 {
        let _ = sys::pidfd_send_signal(&s.pidfd, signal);
    }
    let trace = |errno| RestoreError::Trace {
        pid,
        source: crate::ptrace::PtraceError::Request {
            op: "CONT",
            pid,
            errno,
        },
    };
    match nix::sys::ptrace::cont(npid, None) {
        // SIGKILL ended it already.
        Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
        Err(errno) => return Err(trace(errno)),
    }
    loop {
        use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
        match waitpid(npid, Some(WaitPidFlag::__WALL)) {
            Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) => break,
            // The signal-delivery stop of the fatal signal: deliver it.
            Ok(WaitStatus::Stopped(_, sig)) if Some(sig) == deliver => {
                nix::sys::ptrace::cont(npid, Some(sig)).map_err(trace)?;
            }
            Ok(_) => {
                nix::sys::ptrace::cont(npid, None).map_err(trace)?;
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(errno) => {
                return Err(RestoreError::Trace {
                    pid,
                    source: crate::ptrace::PtraceError::Request {
                        op: "waitpid",
                        pid,
                        errno,
                    },
                })
            }
        }
    }
    // Collected by us, it is now its parent's zombie: nothing to kill.
    drop(s);
    Ok(())
}

/// Make the blank child `s` exec its own saved executable `path`, so that
/// `/proc/PID/exe` names it, when that gains nothing: the child (holding
/// the caller's credentials) opens it, the restorer checks that copy is a
/// regular file with no set-id bit for anyone else and no file
/// capabilities, and the child execs that very file (`execveat` on the
/// fd). `false`: not exec'ed (gone, or it would gain privilege).
fn exec_own_exe(s: &mut Stub, tramp: u64, path: &str) -> Result<bool, RestoreError> {
    use std::os::unix::fs::MetadataExt;
    let pid = s.pid();
    let tr = |source| RestoreError::Trace { pid, source };
    super::files::check_path(path)?;
    let fd = {
        let mut inj = Injector::new(&mut s.tracee);
        inj.use_scratch(tramp + super::mm::PAGE, super::mm::PAGE);
        let at = inj.put_cstr(path, "writing a path")?;
        let r = inj.syscall_raw(
            libc::SYS_openat,
            [
                libc::AT_FDCWD as u64,
                at,
                (libc::O_RDONLY | libc::O_CLOEXEC) as u64,
                0,
                0,
                0,
            ],
        )?;
        if r < 0 {
            return Ok(false);
        }
        r as u64
    };
    let copy =
        sys::pidfd_getfd(&s.pidfd, i32::try_from(fd).unwrap_or(-1)).map_err(RestoreError::Spawn)?;
    let meta = std::fs::File::from(copy.try_clone().map_err(|e| {
        RestoreError::Spawn(nix::errno::Errno::from_raw(
            e.raw_os_error().unwrap_or(libc::EIO),
        ))
    })?)
    .metadata()
    .ok();
    // The child's own ids are the caller's (a `Final` stub): its uid and
    // gid are what `/proc/PID/status` of the child says.
    let ids = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|t| crate::procfs::status::parse_status(&t).ok())
        .map(|st| (st.uid[1], st.gid[1]));
    let ok = match (meta, ids) {
        (Some(m), Some((uid, gid))) => {
            let foreign_suid = m.mode() & libc::S_ISUID != 0 && m.uid() != uid;
            let foreign_sgid = m.mode() & libc::S_ISGID != 0 && m.gid() != gid;
            m.is_file() && !foreign_suid && !foreign_sgid && !sys::has_file_caps(&copy)
        }
        _ => false,
    };
    let mut inj = Injector::new(&mut s.tracee);
    inj.use_scratch(tramp + super::mm::PAGE, super::mm::PAGE);
    if !ok {
        inj.syscall("close", libc::SYS_close, [fd, 0, 0, 0, 0, 0])?;
        return Ok(false);
    }
    let name = inj.put_cstr(path, "writing argv")?;
    let argv = inj.put_bytes(
        &[name.to_ne_bytes(), 0u64.to_ne_bytes()].concat(),
        "writing argv",
    )?;
    let envp = inj.put_bytes(&0u64.to_ne_bytes(), "writing envp")?;
    let empty = inj.put_cstr("", "writing a path")?;
    let t = inj.tracee();
    let mut regs = t.regs().map_err(tr)?;
    regs.rip = tramp;
    regs.rax = libc::SYS_execveat as u64;
    regs.orig_rax = u64::MAX;
    regs.rdi = fd;
    regs.rsi = empty;
    regs.rdx = argv;
    regs.r10 = envp;
    regs.r8 = libc::AT_EMPTY_PATH as u64;
    t.set_regs(&regs).map_err(tr)?;
    t.cont_until_exec().map_err(tr)?;
    t.next_syscall_stop().map_err(tr)?;
    s.exec = true;
    s.exec_dispositions = true;
    Ok(true)
}

/// Let every process run: children before their parents, each one's
/// threads before it; a process that was stopped by a signal stops again
/// before it runs any instruction.
fn release_all(stubs: Stubs, m: &Manifest) -> Result<(), RestoreError> {
    let mut first_err = Ok(());
    let all: Vec<(usize, Stub)> = stubs
        .tasks
        .into_iter()
        .enumerate()
        .filter_map(|(i, s)| s.map(|s| (i, s)))
        .collect();
    for (i, s) in all.into_iter().rev() {
        let stopped = m.tasks.get(i).is_some_and(|p: &ProcessState| p.stopped);
        let r = s.finish(stopped);
        if first_err.is_ok() {
            first_err = r;
        }
    }
    first_err
}

impl Builder<'_> {
    /// Move the inherited end of the transfer pair to `to` (above every
    /// fd number the image restores), with the stub's open-file limit
    /// raised to its hard limit (the saved limits are set later).
    fn move_transport(&mut self, to: u64) -> Result<(), RestoreError> {
        self.raise_open_file_limit(to + 1, to)?;
        let from = self.shared.stub_fd;
        if from != to {
            // Not close-on-exec: a child that execs its own executable
            // keeps it.
            self.sys("dup3(transfer)", libc::SYS_dup3, [from, to, 0, 0, 0, 0])?;
            self.sys("close", libc::SYS_close, [from, 0, 0, 0, 0, 0])?;
            self.shared.stub_fd = to;
        }
        Ok(())
    }

    /// Fork a child of this (blank) stub from the trampoline at `tramp`:
    /// traced by us from its first instruction (`CLONE_PTRACE`), stopped.
    /// With `same-pid` it gets `old_pid` (`ns_last_pid`, checked, retried)
    /// or the restore fails. `share_fds`: it shares this stub's fd table
    /// (`CLONE_FILES`), as it shared its parent's at dump.
    fn fork_child(
        &mut self,
        tramp: u64,
        old_pid: i32,
        share_fds: bool,
    ) -> Result<Stub, RestoreError> {
        let want = self.opts.keeps_pids().then_some(old_pid);
        let mut attempts = 0;
        loop {
            attempts += 1;
            if let Some(w) = want {
                self.reserve_pid(w)?;
            }
            let mut flags = (libc::SIGCHLD | libc::CLONE_PTRACE) as u64;
            if share_fds {
                flags |= libc::CLONE_FILES as u64;
            }
            let r = self.sys("clone(fork)", libc::SYS_clone, [flags, 0, 0, 0, 0, 0])?;
            let ns_pid = i32::try_from(r).map_err(|_| {
                RestoreError::Invalid(format!("clone returned {r}, which is not a pid"))
            })?;
            // In a new pid namespace clone returned the child's pid there;
            // we trace it by its pid here.
            // (If it cannot be found, its parent, this stub, is killed with
            // the rest of the tree.)
            let pid = match self.pidns {
                Some(_) => super::pidns::outer_child(self.pid(), ns_pid)?,
                None => ns_pid,
            };
            let mut tracee = Tracee::attached(pid);
            let pidfd = match sys::pidfd_open(pid) {
                Ok(fd) => fd,
                Err(e) => {
                    let _ = nix::sys::signal::kill(Pid::from_raw(pid), nix::sys::signal::SIGKILL);
                    let _ = nix::sys::wait::waitpid(
                        Pid::from_raw(pid),
                        Some(nix::sys::wait::WaitPidFlag::__WALL),
                    );
                    return Err(RestoreError::Spawn(e));
                }
            };
            let started = tracee.wait_initial_sigstop();
            let template = tracee.regs();
            let mut stub = Stub {
                tracee,
                ns_pid,
                pidfd,
                exec: false,
                threads: Vec::new(),
                // A copy of this blank stub's dispositions.
                exec_dispositions: self.exec_dispositions,
            };
            let (Ok(()), Ok(template)) = (started, template) else {
                stub.kill();
                return Err(RestoreError::Trace {
                    pid,
                    source: crate::ptrace::PtraceError::Request {
                        op: "waitpid",
                        pid,
                        errno: nix::errno::Errno::ECHILD,
                    },
                });
            };
            stub.tracee.set_trap_site(tramp, template);
            if let Some(w) = want.filter(|w| *w != ns_pid) {
                // Undone: killed and collected by us, then reaped by its
                // parent (this stub), so no stray zombie is left to it.
                stub.kill();
                self.sys_raw(
                    libc::SYS_wait4,
                    [ns_pid as u64, 0, libc::__WALL as u64, 0, 0, 0],
                )?;
                if attempts >= super::threads::SAME_TID_ATTEMPTS {
                    return Err(RestoreError::PidTaken(w));
                }
                continue;
            }
            return Ok(stub);
        }
    }

    /// Drop the `SIGCHLD`s the zombies' exits queued (the process had
    /// been told of those exits before the dump).
    fn drop_sigchld(&mut self) -> Result<(), RestoreError> {
        let set = self
            .inj
            .put_bytes(&(1u64 << (libc::SIGCHLD - 1)).to_ne_bytes(), "a sigset")?;
        let zero = self.inj.put_bytes(&[0u8; 16], "a timespec")?;
        loop {
            let r = self.sys_raw(libc::SYS_rt_sigtimedwait, [set, 0, zero, 8, 0, 0])?;
            if r < 0 {
                return Ok(());
            }
        }
    }
}
