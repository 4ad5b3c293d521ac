//! A real software TPM (swtpm, libtpms) for the tests: started as a child
//! of the test on a free loopback port pair with its own state directory,
//! and killed and reaped when dropped.
//!
//! `swtpm socket --tpm2 --tpmstate dir=DIR --server type=tcp,port=P,...
//! --ctrl type=tcp,port=P+1,... --flags not-need-init,startup-clear`: the
//! TCTI `swtpm:host=127.0.0.1,port=P` needs the control port at P+1. State
//! (persistent keys) survives [`Swtpm::stop`] + [`Swtpm::start_again`].

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running (or stopped) swtpm.
#[derive(Debug)]
pub struct Swtpm {
    child: Option<Child>,
    /// Server port (the control port is `port + 1`).
    pub port: u16,
    /// Its state directory.
    pub state: PathBuf,
    log: PathBuf,
}

/// A loopback port `p` such that `p` and `p + 1` are both free right now.
fn free_port_pair() -> u16 {
    for _ in 0..200 {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let p = l.local_addr().expect("local addr").port();
        if p < u16::MAX && TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
    panic!("no free loopback port pair for swtpm");
}

impl Swtpm {
    /// Starts swtpm with a fresh state directory `state` (created, mode
    /// 0700) and waits until it accepts connections.
    pub fn start(state: &Path) -> Swtpm {
        fs::create_dir_all(state).unwrap_or_else(|e| panic!("mkdir {}: {e}", state.display()));
        let mut t = Swtpm {
            child: None,
            port: 0,
            state: state.to_path_buf(),
            log: state.with_extension("log"),
        };
        t.start_again();
        t
    }

    /// (Re)starts swtpm on the same state directory, on a free port (the
    /// port may change: read [`Swtpm::tcti`] again).
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "swtpm is already running");
        let bin = ["/usr/bin/swtpm", "/usr/local/bin/swtpm"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .expect("swtpm is not installed (scripts/test.sh installs the swtpm package)");
        for _attempt in 0..10 {
            let port = free_port_pair();
            let log = fs::File::create(&self.log).expect("create swtpm log");
            let mut child = Command::new(&bin)
                .args(["socket", "--tpm2", "--tpmstate"])
                .arg(format!("dir={}", self.state.display()))
                .arg("--server")
                .arg(format!("type=tcp,port={port},bindaddr=127.0.0.1"))
                .arg("--ctrl")
                .arg(format!("type=tcp,port={},bindaddr=127.0.0.1", port + 1))
                .args(["--flags", "not-need-init,startup-clear"])
                .env_clear()
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("dup log"))
                .stderr(log)
                .spawn()
                .expect("start swtpm");
            let start = Instant::now();
            let ready = loop {
                if let Ok(Some(_)) = child.try_wait() {
                    break false; // port taken in between: try another
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok()
                    && TcpStream::connect(("127.0.0.1", port + 1)).is_ok()
                {
                    break true;
                }
                if start.elapsed() > Duration::from_secs(10) {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "swtpm did not listen within 10 s:\n{}",
                        fs::read_to_string(&self.log).unwrap_or_default()
                    );
                }
                std::thread::sleep(Duration::from_millis(5));
            };
            if ready {
                self.port = port;
                self.child = Some(child);
                return;
            }
        }
        panic!(
            "swtpm could not start:\n{}",
            fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    /// The TCTI string for this instance.
    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    /// Stops it (SIGTERM, then wait); the state directory stays.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            if let Ok(pid) = i32::try_from(c.id()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
            let start = Instant::now();
            loop {
                match c.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if start.elapsed() > Duration::from_secs(5) => {
                        let _ = c.kill();
                        let _ = c.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        }
    }

    /// Whether the process is running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        self.stop();
    }
}
