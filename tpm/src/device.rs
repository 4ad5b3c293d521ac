//! A connection to the TPM, through tss-esapi (libtss2-esys).
//!
//! Calls that take no authorization (`PCR_Read`, `ReadPublic`, turning a
//! persistent handle into an ESYS object) run without a session: with a
//! password session set, `PCR_Read` fails and libtss2-esys 3.2.1 crashes in
//! `Esys_TR_FromTPMPublic` (see docs/TPM.md, "Facts the code relies on"). Calls that use a key or
//! the owner hierarchy run with a password session.

use std::str::FromStr as _;

use ckpt_keys::quote::PcrValue;
use ckpt_keys::{ecdsa, Algorithm, KeyId, PublicKey};
use tss_esapi::attributes::ObjectAttributesBuilder;
use tss_esapi::constants::response_code::Tss2ResponseCodeKind;
use tss_esapi::constants::tss::{TPM2_RH_NULL, TPM2_ST_HASHCHECK};
use tss_esapi::handles::{KeyHandle, ObjectHandle, PcrHandle, PersistentTpmHandle, TpmHandle};
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, PublicAlgorithm};
use tss_esapi::interface_types::dynamic_handles::Persistent;
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::interface_types::resource_handles::{Hierarchy, Provision};
use tss_esapi::interface_types::session_handles::AuthSession;
use tss_esapi::structures::{
    Auth, Data, Digest, DigestValues, EccParameter, EccPoint, EccScheme, HashScheme,
    HashcheckTicket, KeyDerivationFunctionScheme, PcrSelectionListBuilder, PcrSlot, Public,
    PublicBuilder, PublicEccParametersBuilder, Signature, SignatureScheme,
    SymmetricDefinitionObject,
};
use tss_esapi::traits::Marshall as _;
use tss_esapi::tss2_esys::TPMT_TK_HASHCHECK;
use tss_esapi::{Context, TctiNameConf};
use zeroize::Zeroizing;

use crate::outcome::{ProvisionOutcome, TpmQuote};
use crate::store::{KeyRef, TpmKeyRecord, AUTH_LEN};
use crate::TSS2_LOG_QUIET;

/// Why a TPM operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TpmError {
    /// The environment holds `TSS2_*` variables libtss2 would act on.
    #[error("refusing to use libtss2: the environment holds {0} (it must be cleared first)")]
    Environment(String),
    /// The TCTI string is not one libtss2 understands.
    #[error("invalid TCTI {tcti:?}")]
    Tcti {
        tcti: String,
        #[source]
        source: tss_esapi::Error,
    },
    /// The TPM cannot be reached through the TCTI.
    #[error("cannot reach the TPM through {tcti:?}")]
    Unreachable {
        tcti: String,
        #[source]
        source: tss_esapi::Error,
    },
    /// A TPM command failed.
    #[error("TPM command {op} failed")]
    Command {
        op: &'static str,
        #[source]
        source: tss_esapi::Error,
    },
    /// Nothing at a persistent handle that should hold a key.
    #[error(
        "the TPM holds no key at handle {0:#x} (cleared? run `ckpt-sign keygen --tpm --force`)"
    )]
    Missing(u32),
    /// A persistent handle holds another object than the recorded key.
    #[error(
        "the TPM object at handle {handle:#x} is not the recorded key {expected} (found {found})"
    )]
    WrongKey {
        handle: u32,
        expected: KeyId,
        found: String,
    },
    /// A handle needed for a new key is taken.
    #[error(
        "TPM persistent handle {0:#x} is already in use (use --force to replace what is there)"
    )]
    HandleInUse(u32),
    /// The TPM returned something this crate cannot use.
    #[error("unexpected TPM output: {0}")]
    Unexpected(&'static str),
    /// Random bytes for a new key could not be had.
    #[error("cannot get random bytes from the operating system")]
    Randomness(#[source] getrandom::Error),
}

fn cmd(op: &'static str) -> impl FnOnce(tss_esapi::Error) -> TpmError {
    move |source| TpmError::Command { op, source }
}

fn is_handle_error(e: &tss_esapi::Error) -> bool {
    match e {
        tss_esapi::Error::Tss2Error(rc) => {
            matches!(rc.kind(), Some(Tss2ResponseCodeKind::Handle))
        }
        tss_esapi::Error::WrapperError(_) => false,
    }
}

/// A key loaded from its persistent handle, its authorization set.
#[derive(Debug)]
pub struct LoadedKey {
    handle: KeyHandle,
    public: PublicKey,
}

impl LoadedKey {
    /// The key's public half.
    pub fn public(&self) -> &PublicKey {
        &self.public
    }
}

/// A connection to the TPM.
pub struct Tpm {
    ctx: Context,
}

impl std::fmt::Debug for Tpm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tpm")
    }
}

/// Refuses to go on when the environment holds a `TSS2_*` variable other
/// than `TSS2_LOG=all+none`.
fn check_environment() -> Result<(), TpmError> {
    for (k, v) in std::env::vars_os() {
        let key = k.to_string_lossy();
        if !key.starts_with("TSS2_") && key != "TCTI" && key != "TPM2TOOLS_TCTI" {
            continue;
        }
        if key == TSS2_LOG_QUIET.0 && v == TSS2_LOG_QUIET.1 {
            continue;
        }
        return Err(TpmError::Environment(key.chars().take(64).collect()));
    }
    Ok(())
}

/// A PCR index as a tss-esapi slot.
fn slot(index: u8) -> Result<PcrSlot, TpmError> {
    PcrSlot::try_from(1u32 << index).map_err(|_| TpmError::Unexpected("PCR index out of range"))
}

fn random_bytes<const N: usize>() -> Result<Zeroizing<[u8; N]>, TpmError> {
    let mut b = Zeroizing::new([0u8; N]);
    getrandom::getrandom(b.as_mut_slice()).map_err(TpmError::Randomness)?;
    Ok(b)
}

/// The template of both keys: ECDSA P-256 with SHA-256, fixed to this TPM,
/// generated inside it, used with its authorization value, no dictionary
/// attack lockout (the value is 32 random bytes). `restricted` makes the
/// attestation key. `unique` makes each keygen yield a new key.
fn template(restricted: bool, unique: &[u8; 32]) -> Result<Public, tss_esapi::Error> {
    let attrs = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(true)
        .with_no_da(true)
        .with_sign_encrypt(true)
        .with_decrypt(false)
        .with_restricted(restricted)
        .build()?;
    let params = PublicEccParametersBuilder::new()
        .with_symmetric(SymmetricDefinitionObject::Null)
        .with_ecc_scheme(EccScheme::EcDsa(HashScheme::new(HashingAlgorithm::Sha256)))
        .with_curve(EccCurve::NistP256)
        .with_key_derivation_function_scheme(KeyDerivationFunctionScheme::Null)
        .with_is_signing_key(true)
        .with_is_decryption_key(false)
        .with_restricted(restricted)
        .build()?;
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::Ecc)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attrs)
        .with_ecc_parameters(params)
        .with_ecc_unique_identifier(EccPoint::new(
            EccParameter::try_from(unique.to_vec())?,
            EccParameter::default(),
        ))
        .build()
}

/// The public key of an ECC P-256 object, or a description of what it is.
fn ecc_public(public: &Public, restricted: bool) -> Result<PublicKey, String> {
    let Public::Ecc {
        object_attributes,
        parameters,
        unique,
        ..
    } = public
    else {
        return Err("not an ECC key".to_owned());
    };
    if parameters.ecc_curve() != EccCurve::NistP256 {
        return Err("not a P-256 key".to_owned());
    }
    if !object_attributes.sign_encrypt()
        || object_attributes.decrypt()
        || object_attributes.restricted() != restricted
        || !object_attributes.fixed_tpm()
        || !object_attributes.sensitive_data_origin()
    {
        return Err("not a key with the expected attributes".to_owned());
    }
    let point = ecdsa::point_from_coordinates(unique.x().value(), unique.y().value())
        .ok_or("not a valid P-256 point")?;
    PublicKey::from_parts(Algorithm::EcdsaP256, &point).map_err(|e| e.to_string())
}

impl Tpm {
    /// Connects through `tcti` (from the root-owned configuration). Refuses
    /// when the environment holds `TSS2_*` variables other than
    /// `TSS2_LOG=all+none`.
    pub fn connect(tcti: &str) -> Result<Tpm, TpmError> {
        check_environment()?;
        let conf = TctiNameConf::from_str(tcti).map_err(|source| TpmError::Tcti {
            tcti: tcti.to_owned(),
            source,
        })?;
        let ctx = Context::new(conf).map_err(|source| TpmError::Unreachable {
            tcti: tcti.to_owned(),
            source,
        })?;
        Ok(Tpm { ctx })
    }

    /// The object at persistent `handle`, or `None` when there is none.
    fn persistent(&mut self, handle: u32) -> Result<Option<ObjectHandle>, TpmError> {
        let h = PersistentTpmHandle::new(handle)
            .map_err(|_| TpmError::Unexpected("not a persistent handle"))?;
        match self
            .ctx
            .execute_without_session(|ctx| ctx.tr_from_tpm_public(TpmHandle::Persistent(h)))
        {
            Ok(o) => Ok(Some(o)),
            Err(e) if is_handle_error(&e) => Ok(None),
            Err(e) => Err(cmd("TR_FromTPMPublic")(e)),
        }
    }

    fn read_public(&mut self, obj: ObjectHandle) -> Result<Public, TpmError> {
        self.ctx
            .execute_without_session(|ctx| ctx.read_public(obj.into()))
            .map(|(p, _, _)| p)
            .map_err(cmd("ReadPublic"))
    }

    /// Loads the key `key` names and checks it is the recorded key.
    pub fn load(&mut self, key: &KeyRef, restricted: bool) -> Result<LoadedKey, TpmError> {
        let obj = self
            .persistent(key.handle)?
            .ok_or(TpmError::Missing(key.handle))?;
        let public = self.read_public(obj)?;
        let pk = ecc_public(&public, restricted).map_err(|found| TpmError::WrongKey {
            handle: key.handle,
            expected: key.key_id,
            found,
        })?;
        if pk.key_id() != key.key_id {
            return Err(TpmError::WrongKey {
                handle: key.handle,
                expected: key.key_id,
                found: format!("key {}", pk.key_id()),
            });
        }
        let auth = Auth::try_from(key.auth.to_vec()).map_err(cmd("TR_SetAuth"))?;
        self.ctx.tr_set_auth(obj, auth).map_err(cmd("TR_SetAuth"))?;
        Ok(LoadedKey {
            handle: obj.into(),
            public: pk,
        })
    }

    /// Creates (or, when `existing` names keys the TPM still holds and
    /// `force` is not set, reuses) the signing key at `signing_handle` and
    /// the attestation key at `ak_handle`. With `force`, whatever is at those
    /// handles is evicted first. Needs the owner hierarchy with an empty
    /// authorization value.
    pub fn provision(
        &mut self,
        signing_handle: u32,
        ak_handle: u32,
        existing: Option<&TpmKeyRecord>,
        force: bool,
    ) -> Result<ProvisionOutcome, TpmError> {
        if let (false, Some(rec)) = (force, existing) {
            if rec.signing.handle == signing_handle && rec.attestation.handle == ak_handle {
                let s = self.load(&rec.signing, false)?;
                let a = self.load(&rec.attestation, true)?;
                return Ok(ProvisionOutcome {
                    record: TpmKeyRecord {
                        signing: KeyRef {
                            handle: rec.signing.handle,
                            auth: rec.signing.auth.clone(),
                            key_id: rec.signing.key_id,
                        },
                        attestation: KeyRef {
                            handle: rec.attestation.handle,
                            auth: rec.attestation.auth.clone(),
                            key_id: rec.attestation.key_id,
                        },
                    },
                    signing: s.public,
                    attestation: a.public,
                    reused: true,
                });
            }
        }
        for h in [signing_handle, ak_handle] {
            if let Some(obj) = self.persistent(h)? {
                if !force {
                    return Err(TpmError::HandleInUse(h));
                }
                let p = Persistent::Persistent(
                    PersistentTpmHandle::new(h)
                        .map_err(|_| TpmError::Unexpected("not a persistent handle"))?,
                );
                self.ctx
                    .execute_with_session(Some(AuthSession::Password), |ctx| {
                        ctx.evict_control(Provision::Owner, obj, p)
                    })
                    .map_err(cmd("EvictControl (remove)"))?;
            }
        }
        let (signing, s_ref) = self.create_persistent(signing_handle, false)?;
        let (attestation, a_ref) = self.create_persistent(ak_handle, true)?;
        Ok(ProvisionOutcome {
            record: TpmKeyRecord {
                signing: s_ref,
                attestation: a_ref,
            },
            signing,
            attestation,
            reused: false,
        })
    }

    fn create_persistent(
        &mut self,
        handle: u32,
        restricted: bool,
    ) -> Result<(PublicKey, KeyRef), TpmError> {
        let unique = random_bytes::<32>()?;
        let auth_bytes = random_bytes::<AUTH_LEN>()?;
        let public = template(restricted, &unique).map_err(cmd("build the key template"))?;
        let auth = Auth::try_from(auth_bytes.to_vec()).map_err(cmd("CreatePrimary"))?;
        let created = self
            .ctx
            .execute_with_session(Some(AuthSession::Password), |ctx| {
                ctx.create_primary(Hierarchy::Owner, public, Some(auth), None, None, None)
            })
            .map_err(cmd("CreatePrimary"))?;
        let pk = ecc_public(&created.out_public, restricted)
            .map_err(|_| TpmError::Unexpected("the new key is not the requested P-256 key"))?;
        let p = Persistent::Persistent(
            PersistentTpmHandle::new(handle)
                .map_err(|_| TpmError::Unexpected("not a persistent handle"))?,
        );
        let transient: ObjectHandle = created.key_handle.into();
        let made = self
            .ctx
            .execute_with_session(Some(AuthSession::Password), |ctx| {
                ctx.evict_control(Provision::Owner, transient, p)
            })
            .map_err(cmd("EvictControl"));
        // The transient copy is not needed any more, whatever happened.
        let _ = self.ctx.flush_context(transient);
        made?;
        Ok((
            pk.clone(),
            KeyRef {
                handle,
                auth: auth_bytes,
                key_id: pk.key_id(),
            },
        ))
    }

    /// Signs SHA-256 of [`ckpt_keys::signed_message`] for `key` and
    /// `manifest_digest`; returns `r || s` with a low `s`.
    pub fn sign_manifest_digest(
        &mut self,
        key: &LoadedKey,
        manifest_digest: &[u8; 32],
    ) -> Result<Vec<u8>, TpmError> {
        use sha2::Digest as _;
        let msg =
            ckpt_keys::signed_message(Algorithm::EcdsaP256, &key.public.key_id(), manifest_digest);
        let digest = sha2::Sha256::digest(&msg);
        let ticket = HashcheckTicket::try_from(TPMT_TK_HASHCHECK {
            tag: TPM2_ST_HASHCHECK,
            hierarchy: TPM2_RH_NULL,
            digest: Default::default(),
        })
        .map_err(cmd("Sign (ticket)"))?;
        let d = Digest::try_from(digest.to_vec()).map_err(cmd("Sign"))?;
        let sig = self
            .ctx
            .execute_with_session(Some(AuthSession::Password), |ctx| {
                ctx.sign(key.handle, d, SignatureScheme::Null, ticket)
            })
            .map_err(cmd("Sign"))?;
        ecc_signature(&sig)
    }

    /// Reads the sha256 values of `pcrs` (ascending indices).
    pub fn pcr_read(&mut self, pcrs: &[u8]) -> Result<Vec<PcrValue>, TpmError> {
        let mut out = Vec::with_capacity(pcrs.len());
        // A TPM returns at most 8 digests per PCR_Read.
        for chunk in pcrs.chunks(8) {
            let slots = chunk
                .iter()
                .map(|&i| slot(i))
                .collect::<Result<Vec<_>, _>>()?;
            let sel = PcrSelectionListBuilder::new()
                .with_selection(HashingAlgorithm::Sha256, &slots)
                .build()
                .map_err(cmd("PCR_Read"))?;
            let (_, read_sel, digests) = self
                .ctx
                .execute_without_session(|ctx| ctx.pcr_read(sel))
                .map_err(cmd("PCR_Read"))?;
            let read: Vec<PcrSlot> = read_sel
                .get_selections()
                .iter()
                .flat_map(|s| s.selected())
                .collect();
            if read != slots || digests.len() != chunk.len() {
                return Err(TpmError::Unexpected("PCR_Read returned another selection"));
            }
            for (&index, d) in chunk.iter().zip(digests.value()) {
                let value: [u8; 32] = d
                    .value()
                    .try_into()
                    .map_err(|_| TpmError::Unexpected("a sha256 PCR value is not 32 bytes"))?;
                out.push(PcrValue { index, value });
            }
        }
        Ok(out)
    }

    /// Quotes `pcrs` (sha256 bank) with the attestation key, `qualifying`
    /// as the qualifying data, with the PCR values the quote covers (read
    /// before the quote, and retried if a PCR changed in between).
    pub fn quote(
        &mut self,
        ak: &LoadedKey,
        qualifying: &[u8; 32],
        pcrs: &[u8],
    ) -> Result<TpmQuote, TpmError> {
        let slots = pcrs
            .iter()
            .map(|&i| slot(i))
            .collect::<Result<Vec<_>, _>>()?;
        for _attempt in 0..3 {
            let values = self.pcr_read(pcrs)?;
            let sel = PcrSelectionListBuilder::new()
                .with_selection(HashingAlgorithm::Sha256, &slots)
                .build()
                .map_err(cmd("Quote"))?;
            let data = Data::try_from(qualifying.to_vec()).map_err(cmd("Quote"))?;
            let (attest, sig) = self
                .ctx
                .execute_with_session(Some(AuthSession::Password), |ctx| {
                    ctx.quote(ak.handle, data, SignatureScheme::Null, sel)
                })
                .map_err(cmd("Quote"))?;
            let bytes = attest.marshall().map_err(cmd("Quote (marshal)"))?;
            let sig = ecc_signature(&sig)?;
            let info = ckpt_keys::quote::parse_quote(&bytes)
                .map_err(|_| TpmError::Unexpected("the TPM's quote does not parse"))?;
            if info.pcr_digest[..] == ckpt_keys::quote::pcr_digest(&values)[..] {
                return Ok(TpmQuote {
                    attest: bytes,
                    signature: sig,
                    pcrs: values,
                });
            }
            // A PCR was extended between the read and the quote: again.
        }
        Err(TpmError::Unexpected(
            "the PCRs kept changing while they were quoted",
        ))
    }

    /// Extends sha256 PCR `index` with `digest` (tests; a measured boot
    /// does this for real).
    pub fn pcr_extend(&mut self, index: u8, digest: &[u8; 32]) -> Result<(), TpmError> {
        let handle = pcr_handle(index)?;
        let mut vals = DigestValues::new();
        vals.set(
            HashingAlgorithm::Sha256,
            Digest::try_from(digest.to_vec()).map_err(cmd("PCR_Extend"))?,
        );
        self.ctx
            .execute_with_session(Some(AuthSession::Password), |ctx| {
                ctx.pcr_extend(handle, vals)
            })
            .map_err(cmd("PCR_Extend"))
    }
}

/// `r || s`, low `s`, from a TPM ECDSA signature.
fn ecc_signature(sig: &Signature) -> Result<Vec<u8>, TpmError> {
    let Signature::EcDsa(e) = sig else {
        return Err(TpmError::Unexpected("not an ECDSA signature"));
    };
    ecdsa::normalize_signature(e.signature_r().value(), e.signature_s().value())
        .map(|s| s.to_vec())
        .ok_or(TpmError::Unexpected("malformed ECDSA signature"))
}

fn pcr_handle(index: u8) -> Result<PcrHandle, TpmError> {
    use PcrHandle as P;
    const ALL: [PcrHandle; 24] = [
        P::Pcr0,
        P::Pcr1,
        P::Pcr2,
        P::Pcr3,
        P::Pcr4,
        P::Pcr5,
        P::Pcr6,
        P::Pcr7,
        P::Pcr8,
        P::Pcr9,
        P::Pcr10,
        P::Pcr11,
        P::Pcr12,
        P::Pcr13,
        P::Pcr14,
        P::Pcr15,
        P::Pcr16,
        P::Pcr17,
        P::Pcr18,
        P::Pcr19,
        P::Pcr20,
        P::Pcr21,
        P::Pcr22,
        P::Pcr23,
    ];
    ALL.get(usize::from(index))
        .copied()
        .ok_or(TpmError::Unexpected("PCR index out of range"))
}
