//! The kernel-style boot, written once for every user (the std harness,
//! the freestanding program, the std global allocator): a base arena over a
//! range of memory, the slab layer's bootstrap caches, quantum caches for
//! the page arena, the page arena (`kpages`, sourced from the base or from
//! an outside [`Source`]), then the size-class caches.
//!
//! The structures themselves are placed at the start of the memory they
//! manage, so the stack needs no heap and no static storage of its own.

use core::mem::size_of;
use core::ptr::{addr_of, addr_of_mut, drop_in_place, NonNull};

use kmem_arena::{Arena, Source};
use kmem_magazine::Cpu;
use kmem_slab::{CacheFlags, Caches, DebugHooks, PageMap, QCaches, PAGE_SIZE};

use crate::error::BootError;
use crate::Kmalloc;

/// Boot parameters.
#[derive(Clone, Copy)]
pub struct Config<'s> {
    /// The largest size the page arena's quantum caches serve (one cache
    /// per page count; at most 16 pages). Slabs of the size classes come
    /// from them. Default: 8 pages.
    pub qcache_max: usize,
    /// Where the page arena imports spans from: the base arena (`None`, the
    /// default) or an outside source (the OS, for the std global
    /// allocator), in which case the base arena holds only metadata.
    pub page_source: Option<&'s dyn Source>,
    /// The page arena imports `size << import_scale` units at a time from
    /// an outside source. Default: 0 (from the base arena nothing is gained
    /// by importing more).
    pub import_scale: u32,
    /// Debug mode for every size class: any of
    /// [`CacheFlags::DEBUG_ALL`](kmem_slab::CacheFlags::DEBUG_ALL)
    /// (`DEBUG` checks every free under the cache lock and reports it;
    /// `REDZONE`, `POISON` and `AUDIT` add the guard word, the poison and
    /// the audit trail). Default: none (release mode).
    pub debug: CacheFlags,
    /// What debug mode calls out to (reports, callers' code addresses, a
    /// clock), set on the cache set at boot. Default: none.
    pub debug_hooks: Option<&'static DebugHooks>,
    /// Where slabs and large blocks are recorded, so that
    /// [`Kmalloc::free_unsized`] can find a block's size from its address
    /// (see [`Kmalloc::with_page_map`]). Default: none.
    pub page_map: Option<&'s dyn PageMap>,
}

impl Default for Config<'_> {
    fn default() -> Self {
        Self {
            qcache_max: 8 * PAGE_SIZE,
            page_source: None,
            import_scale: 0,
            debug: CacheFlags::empty(),
            debug_hooks: None,
            page_map: None,
        }
    }
}

/// Debug-mode flags from a `KMEM_DEBUG`-style spec: `1`, `all`, `yes` or
/// `on` for every part; `0`, `off`, `no` or nothing for none; else a
/// comma-separated list of `checks` (every free checked and reported),
/// `redzone`, `poison` and `audit` (each implies `checks`). `None` for a
/// word it does not know.
///
/// ```
/// use kmalloc::debug_flags;
/// use kmem_slab::CacheFlags;
///
/// assert_eq!(debug_flags("1"), Some(CacheFlags::DEBUG_ALL));
/// assert_eq!(
///     debug_flags("audit,redzone"),
///     Some(CacheFlags::DEBUG | CacheFlags::AUDIT | CacheFlags::REDZONE)
/// );
/// assert_eq!(debug_flags(""), Some(CacheFlags::empty()));
/// assert_eq!(debug_flags("redzone,bogus"), None);
/// ```
pub fn debug_flags(spec: &str) -> Option<CacheFlags> {
    let spec = spec.trim();
    match spec {
        "1" | "all" | "yes" | "on" => return Some(CacheFlags::DEBUG_ALL),
        "" | "0" | "off" | "no" => return Some(CacheFlags::empty()),
        _ => {}
    }
    let mut flags = CacheFlags::empty();
    for word in spec.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        flags |= match word {
            "checks" => CacheFlags::DEBUG,
            "redzone" => CacheFlags::DEBUG | CacheFlags::REDZONE,
            "poison" => CacheFlags::DEBUG | CacheFlags::POISON,
            "audit" => CacheFlags::DEBUG | CacheFlags::AUDIT,
            "all" => CacheFlags::DEBUG_ALL,
            _ => return None,
        };
    }
    Some(flags)
}

/// Everything boot builds, placed at the start of the managed memory.
struct Stack<'a, C: Cpu> {
    base: Arena<'a>,
    caches: Caches<'a, C>,
    qcaches: QCaches<'a, C>,
    pages: Arena<'a>,
    kmalloc: Kmalloc<'a, C>,
}

/// Undoes what has been placed, newest first, if boot stops half-way.
struct Placed<'a, C: Cpu> {
    stack: *mut Stack<'a, C>,
    done: usize,
}

impl<C: Cpu> Drop for Placed<'_, C> {
    /// Drops the placed fields newest first (later fields refer to earlier
    /// ones). Each field has its own guard, so if dropping one panics, the
    /// unwind still drops the older ones: nothing stays registered with the
    /// platform once the memory goes back.
    fn drop(&mut self) {
        /// Drops the field it points at when it goes out of scope, if `live`.
        struct Field<T>(*mut T, bool);
        impl<T> Drop for Field<T> {
            fn drop(&mut self) {
                if self.1 {
                    // SAFETY: `Placed`'s invariant: the field was written by
                    // `place` and is dropped once, here; nothing refers to it
                    // any more (newer fields were dropped before it).
                    unsafe { drop_in_place(self.0) };
                }
            }
        }
        let (s, done) = (self.stack, self.done);
        // SAFETY: `stack` points at the placed `Stack` (written or not: only
        // field addresses are taken here).
        let (base, caches, qcaches, pages, kmalloc) = unsafe {
            (
                addr_of_mut!((*s).base),
                addr_of_mut!((*s).caches),
                addr_of_mut!((*s).qcaches),
                addr_of_mut!((*s).pages),
                addr_of_mut!((*s).kmalloc),
            )
        };
        // Declared oldest first, so dropped newest first.
        let _base = Field(base, done >= 1);
        let _caches = Field(caches, done >= 2);
        let _qcaches = Field(qcaches, done >= 3);
        let _pages = Field(pages, done >= 4);
        let _kmalloc = Field(kmalloc, done >= 5);
    }
}

/// Builds the stack over `[start, start + len)`.
///
/// # Safety
/// The memory is valid for reads and writes and used by nothing else for
/// `'a`, and the returned stack is torn down with [`teardown`] (or never)
/// before `'a` ends.
unsafe fn place<'a, C: Cpu>(
    start: usize,
    len: usize,
    cpu: &'a C,
    config: &Config<'a>,
) -> Result<NonNull<Stack<'a, C>>, BootError> {
    let end = start.checked_add(len).ok_or(BootError::TooSmall)?;
    let first = start
        .checked_next_multiple_of(PAGE_SIZE)
        .ok_or(BootError::TooSmall)?;
    // The structures, then the managed pages.
    let base_start = first
        .checked_add(size_of::<Stack<'a, C>>().next_multiple_of(PAGE_SIZE))
        .ok_or(BootError::TooSmall)?;
    let managed = end.saturating_sub(base_start) / PAGE_SIZE * PAGE_SIZE;
    if managed < 16 * PAGE_SIZE {
        return Err(BootError::TooSmall);
    }
    let stack = first as *mut Stack<'a, C>;
    let mut placed = Placed { stack, done: 0 };
    // `stack` is page-aligned memory of the caller's, large enough for a
    // `Stack` and outside the base arena's range; each field below is
    // written once before it is borrowed, and the borrows live as long as
    // the memory (`'a`).
    // SAFETY: as just said; the base arena's range is the caller's memory.
    let base: &'a Arena<'a> = unsafe {
        let arena =
            Arena::new_base("base", base_start, managed, PAGE_SIZE).map_err(BootError::Arena)?;
        addr_of_mut!((*stack).base).write(arena);
        placed.done = 1;
        &*addr_of!((*stack).base)
    };
    // `boot` tears the set down with a drop guard before handing the memory
    // back; `boot_static` never hands it back.
    // SAFETY: as above; and the set is never leaked while the memory is
    // reused (`with_exit_hooks`' contract), as just said.
    let caches: &'a Caches<'a, C> = unsafe {
        addr_of_mut!((*stack).caches)
            .write(Caches::with_exit_hooks(base, cpu).map_err(BootError::Cache)?);
        placed.done = 2;
        &*addr_of!((*stack).caches)
    };
    let qc = caches
        .qcaches(
            "kpages",
            PAGE_SIZE,
            config.qcache_max,
            kmem_slab::ArenaValues::Memory,
        )
        .map_err(BootError::Cache)?;
    // SAFETY: as above.
    let qcaches: &'a QCaches<'a, C> = unsafe {
        addr_of_mut!((*stack).qcaches).write(qc);
        placed.done = 3;
        &*addr_of!((*stack).qcaches)
    };
    let source: &'a dyn Source = config.page_source.unwrap_or(base);
    let pages = Arena::builder("kpages")
        .quantum(PAGE_SIZE)
        .source(source)
        .import_scale(config.import_scale)
        .tags_from(base)
        .qcaches(qcaches)
        .build()
        .map_err(BootError::Arena)?;
    // SAFETY: as above.
    let pages: &'a Arena<'a> = unsafe {
        addr_of_mut!((*stack).pages).write(pages);
        placed.done = 4;
        &*addr_of!((*stack).pages)
    };
    if let Some(hooks) = config.debug_hooks {
        caches.set_debug_hooks(hooks);
    }
    let kmalloc = Kmalloc::with_page_map(caches, pages, config.debug, config.page_map)
        .map_err(BootError::Cache)?;
    // SAFETY: as above.
    unsafe { addr_of_mut!((*stack).kmalloc).write(kmalloc) };
    core::mem::forget(placed);
    // SAFETY: `first` is not null (it is a page multiple of a valid range).
    Ok(unsafe { NonNull::new_unchecked(stack) })
}

/// Tears a placed stack down, newest first: class caches, page arena (and
/// its quantum caches), bootstrap caches, base arena. Caches and arenas
/// that still have objects out are left as they are (leaked), but every
/// per-thread hook they registered with the platform is withdrawn (a cache
/// whose handle was leaked is withdrawn when its `Caches` drops), also when
/// one step panics.
///
/// # Safety
/// `stack` came from [`place`], no reference into it is used afterwards.
unsafe fn teardown<C: Cpu>(stack: NonNull<Stack<'_, C>>) {
    drop(Placed {
        stack: stack.as_ptr(),
        done: 5,
    });
}

/// The kmalloc of a placed stack.
///
/// # Safety
/// `stack` came from [`place`] and lives for `'a`.
unsafe fn kmalloc_of<'a, C: Cpu>(stack: NonNull<Stack<'a, C>>) -> &'a Kmalloc<'a, C> {
    // SAFETY: the caller's guarantee; the field was written by `place`.
    unsafe { &*addr_of!((*stack.as_ptr()).kmalloc) }
}

/// Boots the whole stack over `mem` on the platform `cpu`, runs `f` with
/// the kmalloc facade, then tears the stack down (also when `f` panics).
/// Objects still allocated when `f` returns are leaked with their caches.
///
/// ```
/// use core::alloc::Layout;
/// use kmalloc::{boot, Config};
/// use kmem_magazine::ThreadCpus;
///
/// let mut mem = vec![0u8; 16 << 20];
/// boot(&mut mem, ThreadCpus::global(), &Config::default(), |k| {
///     let layout = Layout::from_size_align(100, 8).unwrap();
///     let p = k.alloc(layout).unwrap(); // from kmalloc_104
///     // SAFETY: allocated above with this layout, freed once.
///     unsafe { k.free(p, layout) }.unwrap();
/// })
/// .unwrap();
/// ```
pub fn boot<C: Cpu, R>(
    mem: &mut [u8],
    cpu: &C,
    config: &Config<'_>,
    f: impl FnOnce(&Kmalloc<'_, C>) -> R,
) -> Result<R, BootError> {
    struct Teardown<'a, C: Cpu>(NonNull<Stack<'a, C>>, usize, usize);
    impl<C: Cpu> Drop for Teardown<'_, C> {
        fn drop(&mut self) {
            // SAFETY: placed by `boot`; `f` has returned or unwound, so no
            // reference into the stack is used again.
            unsafe { teardown(self.0) };
            // AddressSanitizer builds: the caller gets its memory back
            // without the poison of what was free in it.
            kmem_arena::asan::unpoison(self.1, self.2);
        }
    }
    // SAFETY: `mem` is borrowed exclusively for this call and the stack is
    // torn down before it returns.
    let stack = unsafe { place(mem.as_mut_ptr() as usize, mem.len(), cpu, config) }?;
    let guard = Teardown(stack, mem.as_ptr() as usize, mem.len());
    // SAFETY: placed above; lives until `guard` drops.
    let r = f(unsafe { kmalloc_of(stack) });
    drop(guard);
    Ok(r)
}

/// Boots the whole stack over memory that lives for the rest of the
/// program, for a kernel or a `#[global_allocator]`; it is never torn down.
pub fn boot_static<C: Cpu>(
    mem: &'static mut [u8],
    cpu: &'static C,
    config: &Config<'static>,
) -> Result<&'static Kmalloc<'static, C>, BootError> {
    // SAFETY: the memory is the caller's for the rest of the program and
    // the stack is never torn down.
    let stack = unsafe { place(mem.as_mut_ptr() as usize, mem.len(), cpu, config) }?;
    // SAFETY: placed above, for `'static`.
    let k = unsafe { kmalloc_of(stack) };
    // When the page arena runs out, the caches give back what they hold
    // idle (a fresh arena has room for the callback).
    let _ = k.pages().add_reclaim(k);
    Ok(k)
}
