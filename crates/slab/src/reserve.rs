//! [`Reserve`]: objects taken ahead of time, so that later allocations
//! cannot fail (Linux's prefilled sheaves, FreeBSD's `uma_prealloc`, a
//! mempool's reserve).

use core::sync::atomic::Ordering;

use arrayvec::ArrayVec;
use kmem_magazine::{Cpu, MAGAZINE_ROUNDS};

use crate::cache::KmemCache;
use crate::error::AllocError;
use crate::AllocFlags;

/// Objects a [`Reserve`] holds at most.
pub const RESERVE_MAX: usize = MAGAZINE_ROUNDS;

/// Objects of one cache allocated ahead of time by
/// [`KmemCache::reserve`]: each [`alloc`](Self::alloc) hands one out and
/// cannot fail while any is left, so a caller reserves before it enters a
/// section where an allocation must not fail (under a lock, say) and
/// allocates inside it from the reserve. What is left when the reserve
/// drops goes back to the cache, as a free would.
///
/// The objects live in the reserve itself (an inline array of
/// [`RESERVE_MAX`] words), so a reserve allocates no memory of its own.
#[must_use = "a reserve dropped at once gives its objects straight back"]
pub struct Reserve<'c, 'a, C: Cpu> {
    cache: &'c KmemCache<'a, C>,
    objs: ArrayVec<usize, RESERVE_MAX>,
}

impl<'a, C: Cpu> KmemCache<'a, C> {
    /// Allocates `n` objects now (with `flags`, all or nothing, as
    /// [`alloc_bulk`](Self::alloc_bulk)) and keeps them in a [`Reserve`],
    /// from which `n` allocations then cannot fail. `n` is at most
    /// [`RESERVE_MAX`]; larger needs take several reserves.
    ///
    /// # Errors
    /// [`AllocError::TooMany`] for `n` above [`RESERVE_MAX`], else the
    /// error of the allocation that could not be met (nothing is taken).
    #[track_caller]
    pub fn reserve(&self, flags: AllocFlags, n: usize) -> Result<Reserve<'_, 'a, C>, AllocError> {
        if n > RESERVE_MAX {
            return Err(AllocError::TooMany);
        }
        let mut objs = ArrayVec::new();
        objs.extend(core::iter::repeat_n(0, n));
        self.alloc_bulk(flags, &mut objs)?;
        self.reserved.fetch_add(n as u64, Ordering::Relaxed);
        Ok(Reserve { cache: self, objs })
    }
}

impl<C: Cpu> Reserve<'_, '_, C> {
    /// One of the reserved objects, now the caller's (freed to the cache
    /// as any of its objects); `None` once all are taken.
    pub fn alloc(&mut self) -> Option<usize> {
        let obj = self.objs.pop()?;
        self.cache.reserved.fetch_sub(1, Ordering::Relaxed);
        Some(obj)
    }

    /// Objects left.
    pub fn len(&self) -> usize {
        self.objs.len()
    }

    /// True when every object was taken.
    pub fn is_empty(&self) -> bool {
        self.objs.is_empty()
    }
}

impl<C: Cpu> Drop for Reserve<'_, '_, C> {
    #[allow(
        unsafe_code,
        reason = "the reserve gives back objects it allocated and never handed out"
    )]
    fn drop(&mut self) {
        let left = self.objs.len() as u64;
        // SAFETY: each object left was allocated from this cache by
        // `reserve` and never handed out (`alloc` pops what it hands out),
        // so it is the reserve's to free, once.
        let freed = unsafe { self.cache.free_bulk(&self.objs) };
        // A refusal would be the cache's corruption, counted there; the
        // objects after it are leaked rather than freed twice.
        let _ = freed;
        self.cache.reserved.fetch_sub(left, Ordering::Relaxed);
    }
}
