//! Pointers and locks the compiler cannot follow, behind safe handles:
//! with [`raw`](crate::raw), the only module of this crate with `unsafe`
//! code.
//!
//! - `registry.rs`: [`Cache`], a created cache placed in a `kmem_cache`
//!   object and referring back to its set; the set's [`Registry`] of
//!   caches; `Caches::create` and the teardown of a created cache.
//! - `magazines.rs`: [`CacheMagazines`], a cache's magazine layer bound to
//!   the one magazine source it may use, on its per-CPU array.
//! - `qcaches.rs`: [`QCacheList`], the caches of a `QCaches`, read without
//!   a lock by the arena they serve.
//! - `fork.rs`: the locks of a set kept across `fork()`.
//! - [`call_out`]: a constructor or destructor run with the context's
//!   operation mark lifted.

mod fork;
mod magazines;
mod qcaches;
mod registry;

use core::ptr;
use core::sync::atomic::{AtomicPtr, Ordering};

use kmem_magazine::{Cpu, Section};

use crate::debug::DebugHooks;

pub(crate) use magazines::{take_unregistered, CacheMagazines};
pub(crate) use qcaches::QCacheList;
pub use registry::Cache;
pub(crate) use registry::Registry;

/// A cache starts importing slabs from `src`: counted, so that the arena's
/// `destroy` refuses while the cache may hold slabs of it. Called once per
/// cache (at build), matched by [`unregister_importer`] at teardown.
pub(crate) fn register_importer(src: &kmem_arena::Arena<'_>) {
    // SAFETY: once per cache, by the cache (`KmemCache::build`); `teardown`
    // calls `unregister_importer` once, after giving every slab back.
    unsafe { kmem_arena::Source::add_importer(src) }
}

/// The cache is gone: it holds no slab of `src` any more (see
/// [`register_importer`]).
pub(crate) fn unregister_importer(src: &kmem_arena::Arena<'_>) {
    // SAFETY: matches the cache's one `register_importer`; its teardown gave
    // every slab back before calling this.
    unsafe { kmem_arena::Source::remove_importer(src) }
}

/// Runs a constructor or destructor: with the context's operation mark
/// lifted (it may allocate, from the same cache too), when the cache has
/// magazines on `cpu`. Callers hold no lock of the cache: one held would
/// make an allocation in `f` wait for ever.
pub(crate) fn call_out<C: Cpu, R>(cpu: Option<&C>, f: impl FnOnce() -> R) -> R {
    match cpu {
        // No code of this crate holds slot state, which is private to the
        // magazine layer, and the layer runs none of this crate's code
        // (magazine source, drain sinks) while it holds it. A lock held
        // across `f` could only make an allocation spin (a hang, not
        // unsoundness); callers hold none.
        // SAFETY: so an allocation made by `f` cannot reach slot state in
        // use (above).
        Some(cpu) => unsafe { Section::outside(cpu, f) },
        None => f(),
    }
}

/// A `&'static DebugHooks` that can be set at any time and read without a
/// lock.
pub(crate) struct HookCell(AtomicPtr<DebugHooks>);

impl HookCell {
    pub(crate) const fn new() -> Self {
        Self(AtomicPtr::new(ptr::null_mut()))
    }

    pub(crate) fn set(&self, hooks: &'static DebugHooks) {
        self.0
            .store(ptr::from_ref(hooks).cast_mut(), Ordering::Release);
    }

    pub(crate) fn get(&self) -> Option<&'static DebugHooks> {
        let p = self.0.load(Ordering::Acquire);
        // SAFETY: null, or a `&'static DebugHooks` stored by `set`.
        unsafe { p.as_ref() }
    }
}
