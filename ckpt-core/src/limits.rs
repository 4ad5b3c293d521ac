//! Size caps for everything read from an image, checked before anything is
//! allocated or decoded. An image that exceeds one is rejected as malformed
//! ([`crate::image::ImageError::TooLarge`]); the writer refuses to produce
//! one.

/// Largest manifest (CBOR bytes) an image may have: 64 MiB.
pub const MAX_MANIFEST_LEN: u64 = 64 << 20;

/// Largest signature block (CBOR bytes): 64 KiB.
pub const MAX_SIGBLOCK_LEN: u64 = 64 << 10;

/// Largest single chunk of memory data: 8 MiB.
pub const MAX_CHUNK_LEN: u64 = 8 << 20;

/// Most chunks an image may list: 2^20.
pub const MAX_CHUNKS: u64 = 1 << 20;

/// Deepest nesting of CBOR arrays, maps and tags accepted when decoding the
/// manifest or the signature block (a valid manifest needs fewer than 10).
pub const MAX_CBOR_DEPTH: usize = 32;
