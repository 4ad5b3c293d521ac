//! Times what a TPM-signed, quoted dump adds per image, against the TPM
//! named by the first argument (a TCTI such as
//! `swtpm:host=127.0.0.1,port=2321`), `N` times (second argument, default
//! 50). Used by `benches/tpm.sh`; prints one JSON object.
//!
//! It provisions throw-away keys at handles 0x81000cf0/0x81000cf1 (evicted
//! first if present: do not point it at a TPM whose keys there matter) and
//! measures, per image, exactly what `ckpt-sign dump` does with the TPM:
//! the plan's probe (connect, load both keys), then connect, load both
//! keys, sign the manifest digest, quote sha256 PCRs 0-7.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::Instant;

use ckpt_tpm::Tpm;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let tcti = std::env::args().nth(1).expect("usage: tpm_bench TCTI [N]");
    let n: usize = std::env::args()
        .nth(2)
        .map_or(50, |s| s.parse().expect("N"));
    std::env::set_var("TSS2_LOG", "all+none");
    let mut tpm = Tpm::connect(&tcti).expect("connect");
    let made = tpm
        .provision(0x8100_0cf0, 0x8100_0cf1, None, true)
        .expect("provision");
    drop(tpm);
    let pcrs = [0u8, 1, 2, 3, 4, 5, 6, 7];
    let (mut probe, mut open, mut sign, mut quote, mut total) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..n {
        let digest = [i as u8; 32];
        let t0 = Instant::now();
        {
            let mut t = Tpm::connect(&tcti).expect("connect");
            t.load(&made.record.signing, false).expect("load");
            t.load(&made.record.attestation, true).expect("load AK");
        }
        let t1 = Instant::now();
        let mut t = Tpm::connect(&tcti).expect("connect");
        let s = t.load(&made.record.signing, false).expect("load");
        let a = t.load(&made.record.attestation, true).expect("load AK");
        let t2 = Instant::now();
        let sig = t.sign_manifest_digest(&s, &digest).expect("sign");
        let t3 = Instant::now();
        let q = t.quote(&a, &digest, &pcrs).expect("quote");
        let t4 = Instant::now();
        drop(t);
        let t5 = Instant::now();
        made.signing
            .verify_manifest_digest(&digest, &sig)
            .expect("verify");
        ckpt_keys::quote::verify_quote(
            &made.attestation,
            &q.attest,
            &q.signature,
            &digest,
            &q.pcrs,
        )
        .expect("verify quote");
        let ms = |a: Instant, b: Instant| (b - a).as_secs_f64() * 1e3;
        probe.push(ms(t0, t1));
        open.push(ms(t1, t2));
        sign.push(ms(t2, t3));
        quote.push(ms(t3, t4));
        total.push(ms(t0, t5));
    }
    // Software verification (what ckpt-verify adds for a TPM image).
    let mut t = Tpm::connect(&tcti).expect("connect");
    let s = t.load(&made.record.signing, false).expect("load");
    let a = t.load(&made.record.attestation, true).expect("load AK");
    let digest = [7u8; 32];
    let sig = t.sign_manifest_digest(&s, &digest).expect("sign");
    let q = t.quote(&a, &digest, &pcrs).expect("quote");
    let v0 = Instant::now();
    for _ in 0..n {
        made.signing
            .verify_manifest_digest(&digest, &sig)
            .expect("verify");
        ckpt_keys::quote::verify_quote(
            &made.attestation,
            &q.attest,
            &q.signature,
            &digest,
            &q.pcrs,
        )
        .expect("verify quote");
    }
    let verify = v0.elapsed().as_secs_f64() * 1e3 / n as f64;
    println!(
        "{{\"tcti\": \"{tcti}\", \"n\": {n}, \"median_ms\": {{\"probe\": {:.3}, \"connect_load\": {:.3}, \"sign\": {:.3}, \"quote\": {:.3}, \"per_image_total\": {:.3}}}, \"verify_sig_and_quote_ms\": {verify:.3}}}",
        median(&mut probe),
        median(&mut open),
        median(&mut sign),
        median(&mut quote),
        median(&mut total),
    );
}
