//! Bakes the configuration and state directories in at build time
//! (`CKPT_SYSCONFDIR`, `CKPT_STATEDIR`); nothing at run time can change them.
fn main() {
    println!("cargo:rerun-if-env-changed=CKPT_SYSCONFDIR");
    println!("cargo:rerun-if-env-changed=CKPT_STATEDIR");
}
