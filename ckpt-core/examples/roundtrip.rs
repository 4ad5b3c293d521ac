//! Developer driver: dump a pid into an image and restore it, without the
//! setuid helpers. `roundtrip dump PID IMAGE [--leave-running]` /
//! `roundtrip restore IMAGE`.
use ckpt_core::image::{ImageMeta, ImageReader, ImageWriter, Requester};
use ckpt_core::restore::{restore, RestoreCredentials, RestoreOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("dump") => {
            let pid: i32 = args.get(2).ok_or("pid")?.parse()?;
            let out = args.get(3).ok_or("image")?;
            let leave = args.iter().any(|a| a == "--leave-running");
            let pidfd = ckpt_core::sys::pidfd_open(pid)?;
            let t0 = std::time::Instant::now();
            let mut frozen = ckpt_core::dump::FrozenTree::seize_process(pidfd, pid)?;
            let file = std::fs::File::create(out)?;
            let mut w = ImageWriter::new(file)?;
            let r = frozen.dump(&mut w)?;
            let meta = ImageMeta {
                host: ckpt_core::host::HostIdentity::current()?,
                kernel_release: ckpt_core::host::kernel_release()?,
                arch: ckpt_core::host::arch()?,
                cpu: r.cpu,
                vdso_digest: r.vdso_digest.clone(),
                requester: Requester {
                    uid: 0,
                    gid: 0,
                    groups: vec![],
                },
            };
            let fin = w.finish(meta, r.into_content(), None)?;
            eprintln!("dumped {} bytes in {:?}", fin.size, t0.elapsed());
            if leave {
                frozen.resume()?;
            } else {
                frozen.kill()?;
            }
        }
        Some("restore") => {
            let path = args.get(2).ok_or("image")?;
            let t0 = std::time::Instant::now();
            let reader = ImageReader::open(std::fs::File::open(path)?)?;
            reader.verify_chunks()?;
            let p = reader.manifest().first_task().ok_or("no process")?;
            let creds = RestoreCredentials {
                uid: p.creds.uid,
                gid: p.creds.gid,
                groups: p.creds.groups.clone(),
            };
            let mut opts = RestoreOptions::caller(creds);
            // `restore IMAGE --as UID` : a privileged restore for caller UID
            // with the saved credentials (and --caps, --same-pid, --exe-link).
            if let Some(i) = args.iter().position(|a| a == "--as") {
                let uid: u32 = args.get(i + 1).ok_or("uid")?.parse()?;
                opts.caller = RestoreCredentials {
                    uid: [uid; 4],
                    gid: [uid; 4],
                    groups: vec![],
                };
                opts.file_creds = opts.caller.clone();
                opts.same_pid = args.iter().any(|a| a == "--same-pid");
                opts.exe_link = args.iter().any(|a| a == "--exe-link");
                if args.iter().any(|a| a == "--caps") {
                    let c = &p.creds;
                    opts.caps = Some(ckpt_core::restore::RestoreCapabilities {
                        inheritable: c.cap_inheritable,
                        permitted: c.cap_permitted,
                        effective: c.cap_effective,
                        bounding: c.cap_bounding,
                        ambient: c.cap_ambient,
                        securebits: c.securebits,
                    });
                }
            }
            let r = restore(&reader, &opts)?;
            eprintln!("restored in {:?}; notices: {:?}", t0.elapsed(), r.notices);
            println!("{}", r.pid);
        }
        _ => return Err("usage".into()),
    }
    Ok(())
}
