//! The standard allocator interfaces: `GlobalAlloc` for [`Kmalloc`] and
//! [`StaticKmalloc`], and `allocator_api2`'s `Allocator` for `&Kmalloc`
//! (with the `nightly` feature, core's unstable `Allocator` too).

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicPtr, Ordering};

use kmem_magazine::Cpu;

use kmem_slab::{AllocFlags, BadFree, Caller};

use crate::{boot_static, AllocError, BootError, Config, FreeError, Kmalloc};

/// Runs `f`, turning a panic inside it into an abort: the caller is an
/// allocator interface (`GlobalAlloc`, `Allocator`) through which Rust
/// forbids unwinding. The panic message is printed first, then "panic in a
/// function that cannot unwind". On the normal path this costs nothing: a
/// function that cannot unwind only gets an out-of-line abort pad.
#[inline(always)]
pub(crate) extern "C" fn no_unwind<R, F: FnOnce() -> R>(f: F) -> R {
    f()
}

/// Who is calling, for debug mode's audit: nobody in release mode (no
/// cost but a test); in debug mode, the entry point's stack, which the
/// caches' [`DebugHooks::caller`](kmem_slab::DebugHooks::caller) turns
/// into the caller's return address.
#[inline(always)]
fn entry<C: Cpu>(k: &Kmalloc<'_, C>, marker: &u8) -> Caller {
    if k.debug().is_empty() {
        Caller::Unknown
    } else {
        Caller::Stack(stack_mark(marker))
    }
}

/// A stack address in the frame of the function this is inlined into: the
/// stack pointer where the architecture has one to read (a local's address
/// can be elsewhere: AddressSanitizer moves escaping locals to a heap "fake
/// stack"), else the address of `marker`, a local of that function.
#[inline(always)]
fn stack_mark(marker: &u8) -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        let _ = marker;
        let sp: usize;
        // SAFETY: reads the stack pointer into a register; no memory, no
        // flags, no stack use.
        unsafe {
            core::arch::asm!("mov {}, rsp", out(reg) sp, options(nomem, nostack, preserves_flags));
        }
        sp
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        ptr::from_ref(marker) as usize
    }
}

/// Stops the program over a free the allocator refused: a double free, a
/// wrong layout or a foreign pointer, which the standard interfaces cannot
/// report (as glibc's "free(): double free detected"). Called inside
/// [`no_unwind`], the panic aborts after printing its message. A free
/// refused only because a signal handler interrupted an allocator call is
/// no bug: the block stays allocated (counted), and the program goes on.
#[cold]
#[inline(never)]
fn bad_free(e: &FreeError, layout: Layout) {
    if matches!(
        e,
        FreeError::Refused {
            kind: BadFree::Reentrant,
            ..
        }
    ) {
        return;
    }
    panic!(
        "kmalloc: {e} (size {}, align {}); aborting",
        layout.size(),
        layout.align()
    );
}

/// Frees for the standard interfaces: a refusal stops the program
/// ([`bad_free`]).
///
/// # Safety
/// As for [`Kmalloc::free`].
#[inline(always)]
unsafe fn free_or_abort<C: Cpu>(k: &Kmalloc<'_, C>, p: NonNull<u8>, layout: Layout, marker: &u8) {
    // SAFETY: forwarded.
    if let Err(e) = unsafe { k.free_by(p, layout, entry(k, marker)) } {
        bad_free(&e, layout);
    }
}

/// `realloc` for the standard interfaces: null on failure, and a refused
/// free of the old block stops the program ([`bad_free`]).
///
/// # Safety
/// As for [`Kmalloc::realloc`].
unsafe fn realloc_or_abort<C: Cpu>(
    k: &Kmalloc<'_, C>,
    p: NonNull<u8>,
    layout: Layout,
    new_size: usize,
    marker: &u8,
) -> Option<NonNull<u8>> {
    // SAFETY: forwarded.
    match unsafe { k.realloc_by(p, layout, new_size, entry(k, marker)) } {
        Ok(p) => Some(p),
        Err(AllocError::BadPointer(e)) => {
            bad_free(&e, layout);
            None
        }
        Err(_) => None,
    }
}

impl<C: Cpu> Kmalloc<'_, C> {
    /// The [`Caller`] a facade's entry point (a C `malloc`, say) passes to
    /// the `_by` functions, called in the entry point's own body (inlined
    /// there), `marker` being one of its locals: nobody in release mode; in
    /// debug mode a mark just below the entry point's stack, which the
    /// caches' [`DebugHooks::caller`](kmem_slab::DebugHooks::caller) turn
    /// into the return address into the entry point's caller. (The
    /// `GlobalAlloc` entry points are one frame deeper: `__rust_alloc`'s
    /// shim calls them.) The entry point must not end in a tail call, or
    /// its frame is gone by the time the mark is read back.
    #[inline(always)]
    pub fn entry_caller(&self, marker: &u8) -> Caller {
        match entry(self, marker) {
            Caller::Stack(sp) => Caller::Stack(sp - 1),
            other => other,
        }
    }

    /// `GlobalAlloc::alloc` (with `ZERO`, `alloc_zeroed`), its caller's
    /// entry point marked by `marker`, a local of that entry point.
    #[inline(always)]
    pub(crate) fn global_alloc(&self, layout: Layout, flags: AllocFlags, marker: &u8) -> *mut u8 {
        self.alloc_by(layout, flags, entry(self, marker))
            .map_or(ptr::null_mut(), NonNull::as_ptr)
    }

    /// `GlobalAlloc::dealloc` (see [`global_alloc`](Self::global_alloc)).
    ///
    /// # Safety
    /// The `GlobalAlloc` contract.
    #[inline(always)]
    pub(crate) unsafe fn global_dealloc(&self, ptr: *mut u8, layout: Layout, marker: &u8) {
        if let Some(p) = NonNull::new(ptr) {
            // SAFETY: the GlobalAlloc contract: `ptr` came from this
            // allocator with `layout`; a broken one stops the program.
            unsafe { free_or_abort(self, p, layout, marker) };
        }
    }

    /// `GlobalAlloc::realloc` (see [`global_alloc`](Self::global_alloc)).
    ///
    /// # Safety
    /// The `GlobalAlloc` contract.
    #[inline(always)]
    pub(crate) unsafe fn global_realloc(
        &self,
        ptr: *mut u8,
        layout: Layout,
        new_size: usize,
        marker: &u8,
    ) -> *mut u8 {
        let Some(p) = NonNull::new(ptr) else {
            return ptr::null_mut();
        };
        // SAFETY: the GlobalAlloc contract, forwarded.
        unsafe { realloc_or_abort(self, p, layout, new_size, marker) }
            .map_or(ptr::null_mut(), NonNull::as_ptr)
    }
}

// SAFETY: `alloc` returns memory of at least `layout.size()` bytes aligned
// to `layout.align()`, owned by the caller until `dealloc`; class objects
// and page runs never overlap while allocated (the slab and arena layers'
// invariants). Errors become null, a panic aborts (`no_unwind`), and so
// does a refused free (`bad_free`).
unsafe impl<C: Cpu> GlobalAlloc for Kmalloc<'_, C> {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let marker = 0u8;
        no_unwind(|| self.global_alloc(layout, AllocFlags::empty(), &marker))
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let marker = 0u8;
        no_unwind(|| self.global_alloc(layout, AllocFlags::ZERO, &marker))
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let marker = 0u8;
        // SAFETY: forwarded.
        no_unwind(|| unsafe { self.global_dealloc(ptr, layout, &marker) });
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let marker = 0u8;
        // SAFETY: forwarded.
        no_unwind(|| unsafe { self.global_realloc(ptr, layout, new_size, &marker) })
    }
}

/// The block `alloc` gives for `layout` as the `Allocator` API wants it:
/// zero-size layouts get [`empty_block`] and never reach the caches.
#[inline(always)]
fn block(
    layout: Layout,
    alloc: impl FnOnce(Layout) -> Result<NonNull<u8>, AllocError>,
) -> Option<NonNull<[u8]>> {
    if layout.size() == 0 {
        return Some(empty_block(layout));
    }
    let p = alloc(layout).ok()?;
    Some(NonNull::slice_from_raw_parts(p, layout.size()))
}

/// A zero-size block for `layout`: dangling, aligned, never dereferenced.
fn empty_block(layout: Layout) -> NonNull<[u8]> {
    // An address equal to the alignment is non-null and aligned.
    let dangling = ptr::without_provenance_mut::<u8>(layout.align());
    // SAFETY: `align` is a non-zero power of two.
    NonNull::slice_from_raw_parts(unsafe { NonNull::new_unchecked(dangling) }, 0)
}

/// `Allocator::allocate` (with `ZERO`, `allocate_zeroed`) of both
/// `Allocator` traits (`allocator_for_ref!`); `None` on failure.
#[inline(always)]
fn allocate<C: Cpu>(
    k: &Kmalloc<'_, C>,
    layout: Layout,
    flags: AllocFlags,
) -> Option<NonNull<[u8]>> {
    let marker = 0u8;
    block(layout, |l| k.alloc_by(l, flags, entry(k, &marker)))
}

/// `Allocator::deallocate` of both `Allocator` traits: zero-size blocks
/// were never allocated; a refused free stops the program ([`bad_free`]).
///
/// # Safety
/// `ptr` was allocated by `k` with `layout` through [`allocate`] or
/// [`resize`], and is not used after.
#[inline(always)]
unsafe fn deallocate<C: Cpu>(k: &Kmalloc<'_, C>, ptr: NonNull<u8>, layout: Layout) {
    let marker = 0u8;
    if layout.size() != 0 {
        // SAFETY: forwarded; a broken contract stops the program.
        unsafe { free_or_abort(k, ptr, layout, &marker) };
    }
}

/// `Allocator::grow`/`shrink` of both `Allocator` traits: in place through
/// `realloc` when the alignment stays, else allocate, copy, free; `None`
/// on failure, the old block then left as it was.
///
/// # Safety
/// `ptr` was allocated by `k` with `old`.
unsafe fn resize<C: Cpu>(
    k: &Kmalloc<'_, C>,
    ptr: NonNull<u8>,
    old: Layout,
    new: Layout,
) -> Option<NonNull<[u8]>> {
    if old.size() != 0 && new.size() != 0 && old.align() == new.align() {
        let marker = 0u8;
        // SAFETY: forwarded.
        let p = unsafe { realloc_or_abort(k, ptr, old, new.size(), &marker) }?;
        return Some(NonNull::slice_from_raw_parts(p, new.size()));
    }
    let fresh = allocate(k, new, AllocFlags::empty())?;
    let n = old.size().min(new.size());
    // SAFETY: both blocks hold at least `n` bytes and are distinct.
    unsafe {
        fresh
            .cast::<u8>()
            .as_ptr()
            .copy_from_nonoverlapping(ptr.as_ptr(), n)
    };
    // SAFETY: forwarded.
    unsafe { deallocate(k, ptr, old) };
    Some(fresh)
}

/// What the `Allocator` methods answer: a block, or the trait's error.
type Block<E> = Result<NonNull<[u8]>, E>;

/// An `Allocator` trait (`$trait`, failing with `$error`) for `&Kmalloc`,
/// through [`allocate`], [`deallocate`] and [`resize`]: allocator-api2's,
/// and with the `nightly` feature core's own (the same methods, so one
/// body serves both).
macro_rules! allocator_for_ref {
    ($trait:path, $error:path) => {
        // SAFETY: blocks are valid for their layout until deallocated, as
        // for `GlobalAlloc` above; zero-size layouts get a dangling aligned
        // pointer and are never passed to the caches; `grow`/`shrink` keep
        // the contents; a panic aborts (`no_unwind`).
        unsafe impl<C: Cpu> $trait for &Kmalloc<'_, C> {
            #[inline]
            fn allocate(&self, layout: Layout) -> Block<$error> {
                no_unwind(|| allocate(self, layout, AllocFlags::empty())).ok_or($error)
            }

            #[inline]
            fn allocate_zeroed(&self, layout: Layout) -> Block<$error> {
                no_unwind(|| allocate(self, layout, AllocFlags::ZERO)).ok_or($error)
            }

            #[inline]
            unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
                // SAFETY: the Allocator contract: allocated here with `layout`.
                no_unwind(|| unsafe { deallocate(self, ptr, layout) });
            }

            unsafe fn grow(&self, ptr: NonNull<u8>, old: Layout, new: Layout) -> Block<$error> {
                // SAFETY: the Allocator contract, forwarded.
                no_unwind(|| unsafe { resize(self, ptr, old, new) }).ok_or($error)
            }

            unsafe fn shrink(&self, ptr: NonNull<u8>, old: Layout, new: Layout) -> Block<$error> {
                // SAFETY: the Allocator contract, forwarded.
                no_unwind(|| unsafe { resize(self, ptr, old, new) }).ok_or($error)
            }
        }
    };
}

allocator_for_ref!(
    allocator_api2::alloc::Allocator,
    allocator_api2::alloc::AllocError
);
// The unstable `core::alloc::Allocator` (`allocator_api`): std's `Vec`,
// `Box` and the other collections' `new_in` take `&Kmalloc`.
#[cfg(feature = "nightly")]
allocator_for_ref!(core::alloc::Allocator, core::alloc::AllocError);

/// A `#[global_allocator]` that the program boots itself, once, over
/// memory it owns for good (a kernel's RAM, a static buffer): until
/// [`init`](Self::init) every allocation fails (returns null).
///
/// ```no_run
/// use kmalloc::{Config, StaticKmalloc};
/// use kmem_magazine::ManualCpus;
///
/// static CPUS: ManualCpus<1> = ManualCpus::new();
/// #[global_allocator]
/// static KMALLOC: StaticKmalloc<ManualCpus<1>> = StaticKmalloc::new();
///
/// fn early_boot(ram: &'static mut [u8]) {
///     KMALLOC.init(ram, &CPUS, &Config::default()).expect("boot");
/// }
/// ```
pub struct StaticKmalloc<C: Cpu + 'static> {
    k: AtomicPtr<Kmalloc<'static, C>>,
}

impl<C: Cpu + 'static> Default for StaticKmalloc<C> {
    fn default() -> Self {
        Self::new()
    }
}

impl<C: Cpu + 'static> StaticKmalloc<C> {
    /// Not booted yet.
    pub const fn new() -> Self {
        Self {
            k: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// Boots the stack over `mem` (see [`boot_static`]) and starts serving
    /// allocations. Once booted, further calls return the running allocator
    /// and leave their `mem` unused.
    pub fn init(
        &self,
        mem: &'static mut [u8],
        cpu: &'static C,
        config: &Config<'static>,
    ) -> Result<&'static Kmalloc<'static, C>, BootError> {
        if let Some(k) = self.get() {
            return Ok(k);
        }
        let k = boot_static(mem, cpu, config)?;
        let ptr = ptr::from_ref(k).cast_mut();
        match self
            .k
            .compare_exchange(ptr::null_mut(), ptr, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => Ok(k),
            // SAFETY: another `init` won; its allocator lives for good.
            Err(other) => Ok(unsafe { &*other }),
        }
    }

    /// The allocator, once booted.
    #[inline]
    pub fn get(&self) -> Option<&'static Kmalloc<'static, C>> {
        // SAFETY: only `init` stores, a pointer to a `'static` allocator.
        unsafe { self.k.load(Ordering::Acquire).as_ref() }
    }
}

/// `GlobalAlloc` for a wrapper that reaches a `'static` [`Kmalloc`]
/// through `$alloc` (which may boot it) on the allocating paths and `$get`
/// (which never boots) on `dealloc`; a wrapper with no allocator yet fails
/// every allocation with null.
macro_rules! forward_global_alloc {
    ([$($gen:tt)*] $ty:ty, $alloc:ident, $get:ident) => {
        // SAFETY: every method forwards to a `'static` `Kmalloc`, whose
        // `global_*` methods keep the `GlobalAlloc` contract, or fails with
        // null; without an allocator nothing was allocated, so `dealloc` has
        // nothing to free. Nothing can unwind (`no_unwind`). Each method's
        // `marker` marks the program's entry into the allocator, for debug
        // mode's audit.
        unsafe impl<$($gen)*> core::alloc::GlobalAlloc for $ty {
            #[inline]
            unsafe fn alloc(&self, layout: core::alloc::Layout) -> *mut u8 {
                let marker = 0u8;
                $crate::global::no_unwind(|| {
                    self.$alloc().map_or(core::ptr::null_mut(), |k| {
                        k.global_alloc(layout, kmem_slab::AllocFlags::empty(), &marker)
                    })
                })
            }

            #[inline]
            unsafe fn alloc_zeroed(&self, layout: core::alloc::Layout) -> *mut u8 {
                let marker = 0u8;
                $crate::global::no_unwind(|| {
                    self.$alloc().map_or(core::ptr::null_mut(), |k| {
                        k.global_alloc(layout, kmem_slab::AllocFlags::ZERO, &marker)
                    })
                })
            }

            #[inline]
            unsafe fn dealloc(&self, ptr: *mut u8, layout: core::alloc::Layout) {
                let marker = 0u8;
                if let Some(k) = self.$get() {
                    // SAFETY: forwarded.
                    $crate::global::no_unwind(|| unsafe { k.global_dealloc(ptr, layout, &marker) })
                }
            }

            #[inline]
            unsafe fn realloc(
                &self,
                ptr: *mut u8,
                layout: core::alloc::Layout,
                new_size: usize,
            ) -> *mut u8 {
                let marker = 0u8;
                $crate::global::no_unwind(|| {
                    self.$alloc().map_or(core::ptr::null_mut(), |k| {
                        // SAFETY: forwarded.
                        unsafe { k.global_realloc(ptr, layout, new_size, &marker) }
                    })
                })
            }
        }
    };
}
#[cfg(feature = "std")]
pub(crate) use forward_global_alloc;

// Before `init` every allocation fails.
forward_global_alloc!([C: Cpu + 'static] StaticKmalloc<C>, get, get);
