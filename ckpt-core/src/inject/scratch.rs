//! The scratch area's bump allocator: addresses in the target, no memory
//! of ours. Owns only the bookkeeping; trusts nothing.

/// A range of target memory handed out front to back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scratch {
    base: u64,
    len: u64,
    next: u64,
}

impl Scratch {
    pub fn new(base: u64, len: u64) -> Scratch {
        Scratch { base, len, next: 0 }
    }

    pub fn base(&self) -> u64 {
        self.base
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// `len` bytes at an offset that is a multiple of `align` (a power of
    /// two; anything else counts as 1); `None` when they do not fit.
    pub fn alloc(&mut self, len: u64, align: u64) -> Option<u64> {
        let align = if align.is_power_of_two() { align } else { 1 };
        let start = self.next.checked_add(align - 1)? & !(align - 1);
        let end = start.checked_add(len)?;
        if end > self.len {
            return None;
        }
        self.next = end;
        self.base.checked_add(start)
    }

    /// Free everything.
    pub fn reset(&mut self) {
        self.next = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::Scratch;

    #[test]
    fn allocations_are_aligned_disjoint_and_bounded() {
        let mut s = Scratch::new(0x1000, 64);
        assert_eq!(s.alloc(3, 1), Some(0x1000));
        assert_eq!(s.alloc(8, 8), Some(0x1008));
        assert_eq!(s.alloc(48, 8), Some(0x1010));
        assert_eq!(s.alloc(1, 1), None);
        s.reset();
        assert_eq!(s.alloc(64, 8), Some(0x1000));
        assert_eq!(s.alloc(0, 8), Some(0x1040));
        assert_eq!(s.alloc(u64::MAX, 8), None);
    }
}
