//! Zero pages in a chunk about to be stored: which pages of a chunk of
//! memory hold anything but zeros, so that the pages that hold only zeros
//! are left out of the image (restore maps such memory fresh, and fresh
//! memory reads as zeros).
//!
//! Owns: nothing (pure functions over a buffer). Trusts: nothing in the
//! bytes (each page is read until its first non-zero word, so a page of
//! data costs a few loads, and a page of zeros one pass).

/// Granularity of what is left out: a page.
pub(super) const PAGE: usize = 4096;

/// Whether every byte of `page` is zero: compared 64 bytes at a time
/// (which the compiler turns into vector loads), stopping at the first
/// block that holds anything else.
pub(super) fn is_zero(page: &[u8]) -> bool {
    let mut blocks = page.chunks_exact(64);
    for block in &mut blocks {
        let mut acc = 0u64;
        for word in block.chunks_exact(8) {
            let mut w = [0u8; 8];
            w.copy_from_slice(word);
            acc |= u64::from_ne_bytes(w);
        }
        if acc != 0 {
            return false;
        }
    }
    blocks.remainder().iter().all(|&b| b == 0)
}

/// Shortest stretch of zero pages left out between two runs of data: a
/// shorter one is stored with them (compressed, it costs next to nothing,
/// while cutting the runs apart makes more, smaller chunks, which compress
/// less well and each cost a manifest entry). Zero pages at either end of
/// a chunk are always left out.
pub(super) const MIN_GAP: usize = 16 * PAGE;

/// The parts of `chunk` to store, as `(offset, length)` in order: the
/// runs of whole pages that are not all zero, and any tail shorter than a
/// page, joined across stretches of zeros shorter than `min_gap` bytes.
/// At most `max_runs` runs: when there would be more, the shortest
/// stretches of zeros between them are stored too (the longest are still
/// left out). An empty list when the chunk holds only zeros. `chunk` may
/// be a part of a longer one: with `inner_start` (`inner_end`) it is not
/// at that one's start (end), and zeros at its start (end) are treated
/// like a stretch between two runs, left out only when at least
/// `min_gap` long.
pub(super) fn nonzero_runs(
    chunk: &[u8],
    min_gap: usize,
    max_runs: usize,
    (inner_start, inner_end): (bool, bool),
    runs: &mut Vec<(usize, usize)>,
) {
    runs.clear();
    let mut off = 0;
    for page in chunk.chunks(PAGE) {
        let keep = page.len() < PAGE || !is_zero(page);
        if keep {
            match runs.last_mut() {
                Some((start, len)) if *start + *len + min_gap > off => {
                    *len = off + page.len() - *start
                }
                _ => runs.push((off, page.len())),
            }
        }
        off += page.len();
    }
    if let Some((start, len)) = runs.first_mut().filter(|r| inner_start && r.0 < min_gap) {
        *len += *start;
        *start = 0;
    }
    if let Some((start, len)) = runs
        .last_mut()
        .filter(|r| inner_end && chunk.len() - (r.0 + r.1) < min_gap)
    {
        *len = chunk.len() - *start;
    }
    if runs.len() <= max_runs.max(1) {
        return;
    }
    // Keep the (max_runs - 1) longest gaps as gaps; fill in the others.
    let mut gaps: Vec<(usize, usize)> = runs
        .windows(2)
        .enumerate()
        .map(|(i, w)| (w[1].0 - (w[0].0 + w[0].1), i))
        .collect();
    // Longest first; of equal ones, the first.
    gaps.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut kept = vec![false; gaps.len()];
    for &(_, i) in gaps.iter().take(max_runs.max(1) - 1) {
        kept[i] = true;
    }
    let mut merged: Vec<(usize, usize)> = Vec::with_capacity(max_runs);
    for (i, &(start, len)) in runs.iter().enumerate() {
        match merged.last_mut() {
            Some((s, l)) if i > 0 && !kept[i - 1] => *l = start + len - *s,
            _ => merged.push((start, len)),
        }
    }
    *runs = merged;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chunk of `pages` pages whose page `i` is non-zero when `data(i)`.
    fn chunk(pages: usize, data: impl Fn(usize) -> bool) -> Vec<u8> {
        let mut c = vec![0u8; pages * PAGE];
        for i in (0..pages).filter(|&i| data(i)) {
            // One byte, somewhere other than the start.
            c[i * PAGE + (i * 37) % PAGE] = 1 + i as u8;
        }
        c
    }

    #[test]
    fn a_page_with_any_byte_set_is_not_zero() {
        let mut page = vec![0u8; PAGE];
        assert!(is_zero(&page));
        for at in [0, 1, 63, 64, 2000, PAGE - 1] {
            page[at] = 0x80;
            assert!(!is_zero(&page), "byte {at}");
            page[at] = 0;
        }
        assert!(is_zero(&page[..100]));
        assert!(!is_zero(&[0, 0, 0, 1]));
    }

    #[test]
    fn runs_of_data_pages_are_kept_and_zero_pages_left_out() {
        let mut runs = Vec::new();
        // 3 zero pages, then 5 of data, in every 8 (bigmem's text).
        let c = chunk(64, |i| i % 8 >= 3);
        nonzero_runs(&c, PAGE, 16, (false, false), &mut runs);
        let want: Vec<(usize, usize)> = (0..8).map(|g| ((g * 8 + 3) * PAGE, 5 * PAGE)).collect();
        assert_eq!(runs, want);
        // All zeros: nothing; all data: one run.
        // Gaps shorter than the least one left out are stored; zeros at
        // the ends are left out whatever their length.
        nonzero_runs(&c, 4 * PAGE, 16, (false, false), &mut runs);
        assert_eq!(runs, vec![(3 * PAGE, 61 * PAGE)]);
        let c = chunk(64, |i| (4..10).contains(&i) || (30..40).contains(&i));
        nonzero_runs(&c, MIN_GAP, 16, (false, false), &mut runs);
        assert_eq!(runs, vec![(4 * PAGE, 6 * PAGE), (30 * PAGE, 10 * PAGE)]);
        nonzero_runs(&c, 21 * PAGE, 16, (false, false), &mut runs);
        assert_eq!(runs, vec![(4 * PAGE, 36 * PAGE)]);
        nonzero_runs(&chunk(64, |_| false), PAGE, 16, (false, false), &mut runs);
        assert!(runs.is_empty());
        nonzero_runs(&chunk(64, |_| true), PAGE, 16, (false, false), &mut runs);
        assert_eq!(runs, vec![(0, 64 * PAGE)]);
        // A tail shorter than a page is kept, zero or not.
        let mut c = chunk(2, |i| i == 0);
        c.extend_from_slice(&[0u8; 10]);
        nonzero_runs(&c, PAGE, 16, (false, false), &mut runs);
        assert_eq!(runs, vec![(0, PAGE), (2 * PAGE, 10)]);
    }

    /// A part of a longer chunk keeps zeros at an inner edge shorter than
    /// the least gap (the run goes on in the next part), and leaves out
    /// longer ones; at an outer edge, any.
    #[test]
    fn zeros_at_an_inner_edge_are_a_gap_like_any_other() {
        let mut runs = Vec::new();
        // 3 zero pages, then 5 of data, in every 8 (bigmem's text).
        let c = chunk(64, |i| i % 8 >= 3);
        nonzero_runs(&c, 4 * PAGE, 16, (true, false), &mut runs);
        assert_eq!(runs, vec![(0, 64 * PAGE)]);
        nonzero_runs(&c, 4 * PAGE, 16, (false, true), &mut runs);
        assert_eq!(runs, vec![(3 * PAGE, 61 * PAGE)]);
        let c = chunk(64, |i| (20..40).contains(&i));
        nonzero_runs(&c, MIN_GAP, 16, (true, true), &mut runs);
        assert_eq!(runs, vec![(20 * PAGE, 20 * PAGE)]);
        let c = chunk(64, |i| (10..60).contains(&i));
        nonzero_runs(&c, MIN_GAP, 16, (true, true), &mut runs);
        assert_eq!(runs, vec![(0, 64 * PAGE)]);
        nonzero_runs(&chunk(64, |_| false), MIN_GAP, 16, (true, true), &mut runs);
        assert!(runs.is_empty());
    }

    #[test]
    fn too_many_runs_fill_in_the_shortest_gaps() {
        let mut runs = Vec::new();
        // Data at 0, 2, 4 (gaps of one page), and at 10 (a gap of five).
        let c = chunk(11, |i| matches!(i, 0 | 2 | 4 | 10));
        nonzero_runs(&c, PAGE, 2, (false, false), &mut runs);
        assert_eq!(runs, vec![(0, 5 * PAGE), (10 * PAGE, PAGE)]);
        nonzero_runs(&c, PAGE, 1, (false, false), &mut runs);
        assert_eq!(runs, vec![(0, 11 * PAGE)]);
        // Every other page: the bound holds, and every data page is in.
        let c = chunk(64, |i| i % 2 == 0);
        nonzero_runs(&c, PAGE, 16, (false, false), &mut runs);
        assert_eq!(runs.len(), 16);
        for i in (0..64).step_by(2) {
            let at = i * PAGE;
            assert!(runs.iter().any(|&(s, l)| s <= at && at < s + l), "page {i}");
        }
    }
}
