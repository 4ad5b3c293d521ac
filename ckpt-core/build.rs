//! Bakes the configuration, state and agent directories in at build time
//! (`CKPT_SYSCONFDIR`, `CKPT_STATEDIR`, `CKPT_LIBEXECDIR`); nothing at run
//! time can change them.
fn main() {
    println!("cargo:rerun-if-env-changed=CKPT_SYSCONFDIR");
    println!("cargo:rerun-if-env-changed=CKPT_STATEDIR");
    println!("cargo:rerun-if-env-changed=CKPT_LIBEXECDIR");
}
