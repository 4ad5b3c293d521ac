#!/usr/bin/env python3
"""Runs CRIU's ZDTM static tests through the installed ckpt helpers.

Started by tests/conformance/run.sh, which fetches and builds the tests and
checks the install; see tests/conformance/README.md. Standard library only.

For every test of the lists and every mode it: starts the test the way its
Makefile says, in a fresh directory; has the caller checkpoint it with
`ckpt-sign dump`; checks the process is gone; has the caller restore it with
`ckpt-verify restore --pidfile`; sends SIGTERM to the restored process, waits
for it to exit and reads the test's verdict (PASS or its own failure text).
Any step that fails is the test's failure reason. Every process it started
(the test's session, the restored process's session, the helpers) is killed
when the test ends, whatever happened.
"""

import argparse
import ast
import datetime
import json
import os
import pwd
import re
import shlex
import signal
import socket
import stat
import subprocess
import sys
import threading
import time

MODES = {
    "root": "caller root, no policy grant (root keeps the pids when they are free)",
    "root-same-pid": "caller root, policy grants same-pid to root for images signed by this host",
    "user": "caller unprivileged (the test runs as the caller's uid), new pid",
    "user-same-pid": "caller unprivileged, policy grants same-pid to that user for images it dumped and this host signed",
    "user-pidns": "caller unprivileged, no grant, restore --pid-namespace (every pid kept, in a new pid namespace)",
}

POLICY_MARKER = "# written by tests/conformance (ZDTM runner); the previous policy is put back when it ends\n"
SAME_PID_POLICY = POLICY_MARKER + """
[[rule]]
name = "zdtm-same-pid"
signed_by = ["this-host"]
requester = ["uid:0"]
caller = ["uid:0"]
grant = ["same-pid"]
"""

USER_SAME_PID_POLICY = POLICY_MARKER + """
[[rule]]
name = "zdtm-user-same-pid"
signed_by = ["this-host"]
requester = ["uid:{uid}"]
caller = ["uid:{uid}"]
grant = ["same-pid"]
"""

PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def read_list(path):
    tests = []
    with open(path) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.split()
            tests.append((parts[0], parts[1] if len(parts) > 1 else ""))
    return tests


def read_desc(static, name):
    """NAME.desc: a Python dict literal (zdtm.py eval()s it; literal_eval
    is enough for these files and runs no code)."""
    path = os.path.join(static, name + ".desc")
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        return {}
    if not text.strip():
        return {}
    return ast.literal_eval(text)


def proc_state(pid):
    """The one-letter state of PID, or None when it does not exist."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            line = f.read()
    except OSError:
        return None
    return line[line.rfind(")") + 2:].split()[0]


def alive(pid):
    st = proc_state(pid)
    return st is not None and st not in ("Z", "X")


def ns_pid(pid):
    """The pid as the process itself sees it (the last NSpid field)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("NSpid:"):
                    return int(line.split()[-1])
    except (OSError, ValueError):
        pass
    return None


def wait_gone(pid, secs):
    end = time.monotonic() + secs
    while time.monotonic() < end:
        if not alive(pid):
            return True
        time.sleep(0.02)
    return not alive(pid)


def scan_procs(token):
    """(pid, ppid, session, carries TOKEN in its environment) for every
    process."""
    out = []
    needle = token.encode() + b"\0"  # a whole entry, not a prefix of another
    for ent in os.listdir("/proc"):
        if not ent.isdigit():
            continue
        try:
            with open(f"/proc/{ent}/stat") as f:
                line = f.read()
            fields = line[line.rfind(")") + 2:].split()
            ppid, sid = int(fields[1]), int(fields[3])
        except (OSError, ValueError, IndexError):
            continue
        marked = False
        try:
            with open(f"/proc/{ent}/environ", "rb") as f:
                marked = needle in f.read()
        except OSError:
            pass
        out.append((int(ent), ppid, sid, marked))
    return out


def kill_everything(token, roots, sessions):
    """SIGKILL every process this test started: those that carry the test's
    TOKEN in their environment (the launcher and every process it forked,
    even one that made its own session), ROOTS (the test's and the restored
    pids), the members of SESSIONS (the launcher's, each helper's, the
    test's, the restored process's: each created by this runner or by a
    process it started), and every descendant of those. Repeats until none
    is left."""
    me = os.getpid()
    for _ in range(100):
        procs = scan_procs(token)
        doomed = {p for p, _, sid, marked in procs
                  if marked or p in roots or (sid in sessions and sid > 1)}
        grew = True
        while grew:
            grew = False
            for p, ppid, _, _ in procs:
                if ppid in doomed and p not in doomed:
                    doomed.add(p)
                    grew = True
        doomed = {p for p in doomed if p not in (me, 1) and alive(p)}
        if not doomed:
            return
        for p in doomed:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)


def remove_tmp_sockets(argv):
    """sockets_dgram binds /tmp/<its --filename>.* (a fixed directory, not
    its own): a run that was killed leaves those sockets behind, and the
    next run (another mode, another uid) cannot bind them. Removes the
    sockets in /tmp named after the test's --filename (sockets only)."""
    names = [a.split("=", 1)[1] for a in argv if a.startswith("--filename=")]
    for n in names:
        if not n or "/" in n:
            continue
        for ent in os.listdir("/tmp"):
            if ent == n or ent.startswith(n + "."):
                path = os.path.join("/tmp", ent)
                try:
                    if stat.S_ISSOCK(os.lstat(path).st_mode):
                        os.unlink(path)
                except OSError:
                    pass


def tail_text(path, lines=3, limit=400):
    try:
        with open(path, errors="replace") as f:
            text = f.read()
    except OSError:
        return None
    rows = [r.strip() for r in text.strip().splitlines() if r.strip()]
    return " | ".join(rows[-lines:])[-limit:]


def one_line(text, limit=300):
    rows = [r.strip() for r in (text or "").strip().splitlines() if r.strip()]
    # The helpers print notices first and the error last.
    errs = [r for r in rows if "error" in r.lower()]
    pick = errs[-1] if errs else (rows[-1] if rows else "")
    return pick[:limit]


class Syslog:
    """Binds the helpers' build-time audit socket (the test prefix's
    run/syslog.sock) and keeps what arrives: a restore that uses a policy
    grant is refused while nobody listens there."""

    def __init__(self, path):
        self.path = path
        self.records = []
        self.sock = None
        if os.path.exists(path) or os.path.islink(path):
            os.unlink(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        os.chmod(path, 0o666)
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                return
            self.records.append(data.decode(errors="replace"))

    def close(self):
        if self.sock:
            self.sock.close()
            try:
                os.unlink(self.path)
            except OSError:
                pass


class PolicySwap:
    """Installs the same-pid policy in <prefix>/etc/policy.toml and puts the
    previous file (or its absence) back afterwards."""

    def __init__(self, sysconfdir, text=SAME_PID_POLICY):
        self.path = os.path.join(sysconfdir, "policy.toml")
        self.text = text
        self.saved = None
        self.saved_mode = None

    def __enter__(self):
        if os.path.lexists(self.path):
            st = os.lstat(self.path)
            with open(self.path, "rb") as f:
                data = f.read()
            if not data.startswith(POLICY_MARKER.encode()):
                self.saved = data
                self.saved_mode = st.st_mode & 0o7777
        tmp = self.path + ".zdtm-tmp"
        with open(tmp, "w") as f:
            f.write(self.text)
        os.chown(tmp, 0, 0)
        os.chmod(tmp, 0o644)
        os.rename(tmp, self.path)
        return self

    def __exit__(self, *exc):
        if self.saved is None:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
        else:
            tmp = self.path + ".zdtm-tmp"
            with open(tmp, "wb") as f:
                f.write(self.saved)
            os.chown(tmp, 0, 0)
            os.chmod(tmp, self.saved_mode)
            os.rename(tmp, self.path)
        return False


class Runner:
    def __init__(self, args):
        self.args = args
        self.static = args.static
        self.bin = os.path.join(args.prefix, "bin")
        self.user = pwd.getpwnam(args.user)
        self.user_groups = os.getgrouplist(args.user, self.user.pw_gid)
        self.timeout = args.timeout
        self.leftovers = {}

    # -- helpers run as the caller ------------------------------------------
    def as_caller(self, mode, argv):
        if mode.startswith("user"):
            return ["setpriv", f"--reuid={self.user.pw_uid}", f"--regid={self.user.pw_gid}",
                    "--init-groups", "--"] + argv
        return argv

    def helper(self, mode, argv, cwd, secs, sessions):
        """Runs a helper as the caller in a session of its own (added to
        SESSIONS: anything left in it is killed when the test ends);
        returns (exit code or None on timeout, stdout, stderr)."""
        p = subprocess.Popen(self.as_caller(mode, argv), cwd=cwd, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             start_new_session=True, env={"PATH": PATH, "LC_ALL": "C"})
        sessions.append(p.pid)
        try:
            out, err = p.communicate(timeout=secs)
        except subprocess.TimeoutExpired:
            kill_everything(self.token, set(), {p.pid})
            out, err = p.communicate()
            return None, out.decode(errors="replace"), err.decode(errors="replace")
        return p.returncode, out.decode(errors="replace"), err.decode(errors="replace")

    # -- one test ------------------------------------------------------------
    def launch_argv(self, name):
        """The command `make -s -n NAME.pid` says starts the test."""
        p = subprocess.run(["make", "-s", "-n", f"{name}.pid"], cwd=self.static,
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
        for line in p.stdout.splitlines():
            words = shlex.split(line)
            env = {}
            while words and "=" in words[0] and not words[0].startswith("./"):
                k, v = words.pop(0).split("=", 1)
                env[k] = v
            if words and words[0] == f"./{name}":
                return [os.path.join(self.static, name)] + words[1:], env
        raise RuntimeError(f"make -s -n {name}.pid printed no ./{name} command: "
                           f"{(p.stdout + p.stderr).strip()[-200:]}")

    def run_test(self, mode, name, workroot):
        r = {"test": name, "mode": mode, "result": "fail", "stage": None, "reason": None}
        desc = read_desc(self.static, name)
        flags = str(desc.get("flags", "")).split()
        r["suid"] = "suid" in flags
        # Per step; a test's .desc may ask for more (maps04: 60).
        try:
            timeout = max(self.timeout, int(desc.get("timeout", 0)))
        except (TypeError, ValueError):
            timeout = self.timeout
        binary = os.path.join(self.static, name)
        if not os.access(binary, os.X_OK):
            r.update(stage="build", reason="the test did not build")
            return r
        chk = os.path.join(self.static, name + ".checkskip")
        if os.access(chk, os.X_OK):
            c = subprocess.run([chk], cwd=self.static, stdin=subprocess.DEVNULL,
                               capture_output=True, timeout=60)
            if c.returncode != 0:
                r.update(result="skip", stage="checkskip",
                         reason="NAME.checkskip: this machine cannot run the test")
                return r

        d = os.path.join(workroot, mode, name)
        subprocess.run(["rm", "-rf", d], check=True)
        os.makedirs(d)
        owner = 0
        env = {"PATH": PATH, "LC_ALL": "C", "HOME": d, "TMPDIR": "/tmp"}
        if mode.startswith("user"):
            owner = self.user.pw_uid
            os.chown(d, owner, self.user.pw_gid)
            if not r["suid"]:
                env["ZDTM_UID"] = str(self.user.pw_uid)
                env["ZDTM_GID"] = str(self.user.pw_gid)
                env["ZDTM_GROUPS"] = " ".join(str(g) for g in self.user_groups)
        os.chmod(d, 0o755)
        out = os.path.join(d, name + ".out")
        inprogress = out + ".inprogress"
        pidfile = os.path.join(d, name + ".pid")
        image = os.path.join(d, "image.ckpt")
        rpidfile = os.path.join(d, "restored.pid")
        # The test's stdout/stderr: a regular file the caller owns (a pipe
        # would be a resource of its own for the dump).
        logpath = os.path.join(d, "test.log")
        logf = open(logpath, "w")
        os.chown(logpath, owner if not r["suid"] else 0, -1)

        sessions = []
        roots = []
        argv = None
        # Every process the test starts inherits this: the clean-up finds
        # them by it, wherever they went (setsid, reparenting to init).
        self.token = f"CKPT_ZDTM_RUN={os.getpid()}.{mode}.{name}.{time.monotonic_ns()}"
        env["CKPT_ZDTM_RUN"] = self.token.split("=", 1)[1]
        try:
            argv, menv = self.launch_argv(name)
            env.update(menv)
            remove_tmp_sockets(argv)
            r["command"] = " ".join(shlex.quote(a) for a in argv)
            # Start: the launcher forks, the child calls setsid() and the
            # launcher writes its pid to NAME.pid and exits 0.
            launcher = subprocess.Popen(argv, cwd=d, stdin=subprocess.DEVNULL, stdout=logf,
                                        stderr=logf, env=env, start_new_session=True)
            sessions.append(launcher.pid)
            try:
                code = launcher.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                r.update(stage="start", reason=f"the test did not start within {timeout}s")
                return r
            pid = None
            try:
                with open(pidfile) as f:
                    pid = int(f.read().strip())
            except (OSError, ValueError):
                pass
            if pid:
                sessions.append(pid)
                roots.append(pid)
            if code != 0 or not pid:
                why = tail_text(inprogress) or tail_text(logpath) or ""
                r.update(stage="start", reason=f"the test did not start (launcher exit {code}): {why}")
                return r
            r["pid"] = pid
            time.sleep(self.args.settle)
            if not alive(pid):
                r.update(stage="start", reason="the test exited before the dump: "
                         + (tail_text(inprogress) or tail_text(logpath) or ""))
                return r

            # Dump, as the caller.
            # The test's whole tree, as CRIU's zdtm.py dumps it.
            code, so, se = self.helper(mode, [os.path.join(self.bin, "ckpt-sign"), "dump", "--tree",
                                              "--pid", str(pid), "-o", image], d, timeout, sessions)
            if code is None:
                r.update(stage="dump", reason=f"ckpt-sign dump timed out after {timeout}s")
                return r
            if code != 0:
                r.update(stage="dump", exit=code, reason=f"dump refused (exit {code}): {one_line(se)}")
                return r
            if not wait_gone(pid, 10):
                r.update(stage="dump", reason=f"pid {pid} still runs 10s after a successful dump")
                return r
            # Make sure the original pid is free for a same-pid restore.
            # (Its parent is init once the launcher exited: init reaps it.)
            end = time.monotonic() + 10
            while proc_state(pid) is not None and time.monotonic() < end:
                time.sleep(0.02)

            # Restore, as the caller.
            restore_args = ["--pid-namespace"] if mode == "user-pidns" else []
            code, so, se = self.helper(mode, [os.path.join(self.bin, "ckpt-verify"), "restore",
                                              *restore_args, image, "--pidfile", rpidfile],
                                       d, timeout, sessions)
            notices = [ln.strip() for ln in se.splitlines() if ln.strip()]
            if notices:
                r["restore_notices"] = notices[:10]
            rpid = None
            try:
                with open(rpidfile) as f:
                    rpid = int(f.read().strip())
            except (OSError, ValueError):
                pass
            if rpid:
                sessions.append(rpid)
                roots.append(rpid)
            if code is None:
                r.update(stage="restore", reason=f"ckpt-verify restore timed out after {timeout}s")
                return r
            if code != 0:
                r.update(stage="restore", exit=code, reason=f"restore failed (exit {code}): {one_line(se)}")
                return r
            if not rpid:
                r.update(stage="restore", reason="restore succeeded but wrote no pid file")
                return r
            r["restored_pid"] = rpid
            r["same_pid"] = rpid == pid or ns_pid(rpid) == pid

            # Check: SIGTERM, wait, read the verdict.
            time.sleep(self.args.settle)
            if not alive(rpid):
                r.update(stage="check", reason="the restored process died before SIGTERM: "
                         + (tail_text(out) or tail_text(inprogress) or tail_text(logpath) or "no output"))
                return r
            os.kill(rpid, signal.SIGTERM)
            if not wait_gone(rpid, timeout):
                r.update(stage="check", reason=f"the restored process did not exit within "
                         f"{timeout}s of SIGTERM")
                return r
            verdict_file = out if os.path.exists(out) else inprogress
            text = ""
            try:
                with open(verdict_file, errors="replace") as f:
                    text = f.read()
            except OSError:
                pass
            r["verdict_file"] = os.path.basename(verdict_file)
            if "PASS" in text.split():
                r.update(result="pass", stage="done", reason=None)
            else:
                r.update(stage="check", reason="the test says: "
                         + (tail_text(verdict_file) or tail_text(logpath) or "nothing (no output file)"))
            return r
        except Exception as e:  # a runner failure is this test's failure, not the run's
            r.update(stage=r["stage"] or "runner", reason=f"runner error: {e}")
            return r
        finally:
            logf.close()
            kill_everything(self.token, set(roots), set(sessions))
            if argv:
                remove_tmp_sockets(argv)

    def run_mode(self, mode, tests):
        workroot = self.args.workdir
        results = []
        for name, lst, cat in tests:
            t0 = time.monotonic()
            r = self.run_test(mode, name, workroot)
            r["list"] = lst
            r["category"] = cat
            r["seconds"] = round(time.monotonic() - t0, 2)
            if r["result"] != "pass":
                r["cause"] = cause_of(r)
            results.append(r)
            mark = {"pass": "PASS", "skip": "SKIP"}.get(r["result"], "FAIL")
            extra = ""
            if r["result"] == "pass" and r.get("verdict_file", "").endswith(".inprogress"):
                extra = " (PASS in .out.inprogress: new pid)"
            log(f"[{mode}] {name:18} {mark}{extra}" + (f"  {r['reason']}" if r["reason"] else ""))
        self.check_leftovers(mode)
        return results

    def check_leftovers(self, mode):
        """A safety net: after a mode, no test program may still run. The
        binaries live in this runner's build cache and only the runner
        (which holds the cache lock) starts them, so any left is ours."""
        prefix = os.path.join(self.static, "").encode()
        left = []
        for ent in os.listdir("/proc"):
            if not ent.isdigit():
                continue
            try:
                with open(f"/proc/{ent}/cmdline", "rb") as f:
                    argv0 = f.read().split(b"\0", 1)[0]
            except OSError:
                continue
            if argv0.startswith(prefix) and alive(int(ent)):
                left.append(int(ent))
        if left:
            log(f"[{mode}] warning: test processes left running after the mode: {left}; killing them")
            self.leftovers.setdefault(mode, []).extend(left)
            for p in left:
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass


CAUSES = [
    # (regular expression on the reason, cause); the first match wins.
    (r"cannot checkpoint child process", "dump refuses child processes"),
    (r"cannot checkpoint fd \d+ \(socket:", "dump refuses sockets"),
    (r"cannot checkpoint fd \d+ \(pipe:", "dump refuses pipes"),
    (r"cannot checkpoint fd \d+ \(anon_inode:\[(\w+)\]", "dump refuses {0} fds"),
    (r"cannot checkpoint fd \d+: deleted file /memfd:", "dump refuses memfd"),
    (r"cannot checkpoint fd \d+: deleted file /dev/zero", "dump refuses shared anonymous memory fds (/dev/zero)"),
    (r"cannot checkpoint fd \d+: deleted file", "dump refuses unlinked open files"),
    (r"cannot checkpoint a deleted working directory", "dump refuses a deleted working directory"),
    (r"cannot checkpoint a POSIX timer", "dump refuses POSIX timers"),
    (r"cannot checkpoint fd \d+ \(/", "dump refuses FIFOs (or another special file)"),
    (r"may not ptrace-read", "suid test runs as root: the unprivileged caller may not dump it"),
    (r"^dump refused", "dump refused (other)"),
    (r"^restore failed", "restore failed"),
    (r"timed out|did not exit within|did not start within", "timeout"),
]


def cause_of(r):
    """A short cause for a failing result: the work item it points at."""
    reason = r.get("reason") or ""
    if r["result"] == "skip":
        return "skipped by NAME.checkskip"
    for rx, cause in CAUSES:
        m = re.search(rx, reason)
        if m:
            return cause.format(*m.groups())
    if r.get("stage") == "check":
        return "state not restored (the test's own check fails)"
    return f"{r.get('stage')}: other"


def score(results, lst=None):
    rs = [r for r in results if lst is None or r["list"] == lst]
    return sum(1 for r in rs if r["result"] == "pass"), len(rs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--static", required=True, help="built test/zdtm/static directory")
    ap.add_argument("--prefix", required=True)
    ap.add_argument("--lists", required=True, help="directory with core.list and extra.list")
    ap.add_argument("--modes", default="root,root-same-pid,user,user-same-pid,user-pidns")
    ap.add_argument("--user", default="ckpt-user")
    ap.add_argument("--workdir", default="/var/tmp/ckpt-zdtm")
    ap.add_argument("--out", required=True, help="JSON result file")
    ap.add_argument("--timeout", type=int, default=30, help="seconds per step")
    ap.add_argument("--settle", type=float, default=0.2,
                    help="seconds between start and dump, and between restore and SIGTERM")
    ap.add_argument("--only", default="", help="comma-separated test names (default: all)")
    ap.add_argument("--meta", default="{}", help="JSON object merged into the result")
    args = ap.parse_args()

    modes = [m for m in args.modes.split(",") if m]
    for m in modes:
        if m not in MODES:
            ap.error(f"unknown mode {m!r} (known: {', '.join(MODES)})")
    tests = [(n, "core", c) for n, c in read_list(os.path.join(args.lists, "core.list"))]
    tests += [(n, "extra", c) for n, c in read_list(os.path.join(args.lists, "extra.list"))]
    if args.only:
        only = set(args.only.split(","))
        unknown = only - {t[0] for t in tests}
        if unknown:
            ap.error(f"not in the lists: {', '.join(sorted(unknown))}")
        tests = [t for t in tests if t[0] in only]

    os.makedirs(args.workdir, exist_ok=True)
    os.chmod(args.workdir, 0o755)
    for m in modes:
        os.makedirs(os.path.join(args.workdir, m), exist_ok=True)
        os.chmod(os.path.join(args.workdir, m), 0o755)

    runner = Runner(args)
    sock = os.path.join(args.prefix, "run", "syslog.sock")
    syslog = Syslog(sock) if os.path.isdir(os.path.dirname(sock)) else None
    started = datetime.datetime.now(datetime.timezone.utc)
    all_results = {}
    try:
        for m in modes:
            log(f"== mode {m}: {MODES[m]}")
            if m.endswith("same-pid"):
                text = SAME_PID_POLICY if m == "root-same-pid" else \
                    USER_SAME_PID_POLICY.format(uid=runner.user.pw_uid)
                with PolicySwap(os.path.join(args.prefix, "etc"), text):
                    chk = subprocess.run([os.path.join(runner.bin, "ckpt-verify"), "policy", "check"],
                                         capture_output=True, text=True)
                    log(f"policy check: {(chk.stdout + chk.stderr).strip()}")
                    if chk.returncode != 0:
                        raise SystemExit("the same-pid policy does not pass `ckpt-verify policy check`")
                    all_results[m] = runner.run_mode(m, tests)
            else:
                all_results[m] = runner.run_mode(m, tests)
    finally:
        if syslog:
            syslog.close()

    # ---- report
    print()
    print("ZDTM static tests through ckpt (CRIU 4.1.1's test/zdtm/static)")
    print(f"{'mode':15} {'core':>7} {'extra':>7} {'total':>7}  what")
    summary = {}
    for m, rs in all_results.items():
        c, ct = score(rs, "core")
        e, et = score(rs, "extra")
        t, tt = score(rs)
        inprog = sum(1 for r in rs if r["result"] == "pass"
                     and r.get("verdict_file", "").endswith(".inprogress"))
        summary[m] = {"pass": t, "total": tt, "core": [c, ct], "extra": [e, et],
                      "pass_in_out_inprogress": inprog,
                      "skipped": [r["test"] for r in rs if r["result"] == "skip"]}
        print(f"{m:15} {c:>3}/{ct:<3} {e:>3}/{et:<3} {t:>3}/{tt:<3}  {MODES[m]}")
    print("A pass with a new pid leaves PASS in NAME.out.inprogress (the test renames it to NAME.out")
    print("only when its pid is the one it started with); such passes are counted:")
    for m, s in summary.items():
        print(f"  {m}: {s['pass_in_out_inprogress']} of {s['pass']} passes read from .out.inprogress")
    print()
    print("Failures by cause (tests per mode):")
    causes = {}
    for m, rs in all_results.items():
        for r in rs:
            if r["result"] != "pass":
                causes.setdefault(r["cause"], {}).setdefault(m, []).append(r["test"])
    for cause, per_mode in sorted(causes.items(), key=lambda kv: -max(len(v) for v in kv[1].values())):
        print(f"  {cause}:")
        for m in all_results:
            if m in per_mode:
                print(f"    {m} ({len(per_mode[m])}): {' '.join(per_mode[m])}")
    print()
    print("Failures (mode: test [stage] reason):")
    for m, rs in all_results.items():
        for r in rs:
            if r["result"] != "pass":
                print(f"  {m}: {r['test']} [{r['stage']}] {r['reason']}")

    doc = {
        "date": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "kernel": os.uname().release,
        "prefix": args.prefix,
        "unprivileged_user": {"name": args.user, "uid": runner.user.pw_uid,
                              "gid": runner.user.pw_gid, "groups": runner.user_groups},
        "timeout_seconds_per_step": args.timeout,
        "modes": {m: MODES[m] for m in all_results},
        "summary": summary,
        "failures_by_cause": causes,
        "leftover_processes": runner.leftovers,
        "results": all_results,
    }
    doc.update(json.loads(args.meta))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1, sort_keys=False)
        f.write("\n")
    os.rename(tmp, args.out)
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
