//! `/proc/PID/auxv`: the ELF auxiliary vector the kernel gave the process at
//! exec, as `(a_type, a_val)` pairs of native-endian `u64` words, ending with
//! the `AT_NULL` pair (type 0).
//!
//! The file must be a whole number of 16-byte pairs, contain an `AT_NULL`
//! pair, and end right after it. The result is the flat list of words, the
//! `AT_NULL` pair included, ready for `PR_SET_MM_AUXV` (whose size limit, the
//! kernel's `AT_VECTOR_SIZE`, is for the caller to check). A kernel thread's
//! auxv is empty, which is an error here.

use super::{Location, ParseError, Problem, ProcFile};

const FILE: ProcFile = ProcFile::Auxv;
const WORD: usize = 8;
const PAIR: usize = 2 * WORD;

/// Parses `/proc/PID/auxv` into its words, up to and including `AT_NULL`.
pub fn parse_auxv(bytes: &[u8]) -> Result<Vec<u64>, ParseError> {
    let err = |offset: usize, field: &'static str, problem: Problem| {
        ParseError::new(FILE, Location::Byte(offset), field, problem)
    };
    let pairs = bytes.chunks_exact(PAIR);
    if !pairs.remainder().is_empty() {
        return Err(err(bytes.len(), "length", Problem::BadLength));
    }
    let mut words = Vec::with_capacity(bytes.len() / WORD);
    let mut offset = 0usize;
    for pair in pairs {
        let (key, value) = pair
            .split_first_chunk::<WORD>()
            .and_then(|(k, rest)| Some((*k, *rest.first_chunk::<WORD>()?)))
            .ok_or_else(|| err(offset, "a_type", Problem::BadLength))?;
        let key = u64::from_ne_bytes(key);
        words.push(key);
        words.push(u64::from_ne_bytes(value));
        offset = offset.saturating_add(PAIR);
        if key == 0 {
            if offset != bytes.len() {
                return Err(err(offset, "AT_NULL", Problem::Trailing));
            }
            return Ok(words);
        }
    }
    Err(err(bytes.len(), "AT_NULL", Problem::Unterminated))
}

#[cfg(test)]
mod tests {
    use super::super::testdata as td;
    use super::*;

    const AT_PAGESZ: u64 = 6;
    const AT_ENTRY: u64 = 9;
    const AT_RANDOM: u64 = 25;
    const AT_EXECFN: u64 = 31;

    fn value_of(words: &[u64], key: u64) -> Option<u64> {
        words.chunks_exact(2).find(|p| p[0] == key).map(|p| p[1])
    }

    fn bytes_of(words: &[u64]) -> Vec<u8> {
        words.iter().flat_map(|w| w.to_ne_bytes()).collect()
    }

    #[test]
    fn procfs_auxv_real_sample() -> Result<(), ParseError> {
        let words = parse_auxv(&td::auxv_bytes())?;
        assert_eq!(words, td::AUXV_WORDS);
        assert_eq!(words.len(), 46);
        assert_eq!(value_of(&words, AT_PAGESZ), Some(4096));
        // AT_ENTRY is inside the executable's r-x mapping in the maps sample.
        assert_eq!(
            value_of(&words, AT_ENTRY).map(|e| e >> 12),
            Some(0x55a0_16a0_9000 >> 12)
        );
        assert!(value_of(&words, AT_RANDOM).is_some());
        assert!(value_of(&words, AT_EXECFN).is_some());
        assert_eq!(words[44..], [0, 0]);
        Ok(())
    }

    #[test]
    fn procfs_auxv_minimal() -> Result<(), ParseError> {
        assert_eq!(parse_auxv(&[0; 16])?, [0, 0]);
        assert_eq!(parse_auxv(&bytes_of(&[6, 4096, 0, 7]))?, [6, 4096, 0, 7]);
        Ok(())
    }

    #[test]
    fn procfs_auxv_malformed() {
        let e =
            |off, field, problem| Err(ParseError::new(FILE, Location::Byte(off), field, problem));
        assert_eq!(parse_auxv(&[]), e(0, "AT_NULL", Problem::Unterminated));
        assert_eq!(parse_auxv(&[0; 8]), e(8, "length", Problem::BadLength));
        assert_eq!(parse_auxv(&[0; 17]), e(17, "length", Problem::BadLength));
        assert_eq!(
            parse_auxv(&bytes_of(&[6, 4096])),
            e(16, "AT_NULL", Problem::Unterminated)
        );
        assert_eq!(
            parse_auxv(&bytes_of(&[0, 0, 6, 4096])),
            e(16, "AT_NULL", Problem::Trailing)
        );
        let mut real = td::auxv_bytes();
        real.truncate(real.len() - 16);
        assert_eq!(
            parse_auxv(&real),
            e(real.len(), "AT_NULL", Problem::Unterminated)
        );
    }
}
