//! Pre-generated random traces, so the generator's cost stays out of the
//! timed loop and every contender sees the same sequence.

use kmem_physmem::Rng;

/// A cyclic trace of indices uniform in `0..bound`, of a power-of-two length.
pub struct IndexTrace {
    indices: Vec<u32>,
    cursor: usize,
}

impl IndexTrace {
    /// `2^len_log2` indices uniform in `0..bound`, from `seed`.
    ///
    /// # Panics
    /// Panics if `bound` is zero or above `u32::MAX`.
    pub fn new(seed: u64, bound: usize, len_log2: u32) -> Self {
        assert!(bound > 0 && u32::try_from(bound).is_ok(), "bad trace bound");
        let mut rng = Rng::new(seed);
        let indices = (0..1usize << len_log2)
            .map(|_| rng.below(bound as u64) as u32)
            .collect();
        Self { indices, cursor: 0 }
    }

    /// The next index, wrapping around at the end of the trace.
    #[inline]
    pub fn next_index(&mut self) -> usize {
        let i = self.indices[self.cursor];
        self.cursor = (self.cursor + 1) & (self.indices.len() - 1);
        i as usize
    }

    /// Restarts the trace from its first index.
    pub fn rewind(&mut self) {
        self.cursor = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::IndexTrace;

    #[test]
    fn bounded_cyclic_and_reproducible() {
        let mut t = IndexTrace::new(7, 10, 4);
        let first: Vec<usize> = (0..16).map(|_| t.next_index()).collect();
        assert!(first.iter().all(|&i| i < 10));
        let again: Vec<usize> = (0..16).map(|_| t.next_index()).collect();
        assert_eq!(first, again);
        t.rewind();
        assert_eq!(t.next_index(), first[0]);
        let mut u = IndexTrace::new(7, 10, 4);
        assert_eq!(u.next_index(), first[0]);
    }
}
