//! A user cache created from the booted stack: [`Tagged`] objects over the
//! page arena, with a constructor that writes a tag (and the object's own
//! address) and a destructor that checks it, both counted. Objects are
//! allocated and freed (the second round must reuse constructed objects from
//! the magazines), a failing constructor is refused, then the cache is
//! flushed, reaped and destroyed, and constructions must balance
//! destructions.

use core::mem::size_of;
use core::ops::Range;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use kmem_slab::{AllocError, AllocFlags, CacheBuilder, CtorError, KmemCache, ObjectOps};

use crate::check::{ensure, fail, ok};
use crate::rt::outln;
use crate::stack::{in_ram, Cpus, K};

/// The object: a tag the constructor writes, its own address, and a payload
/// the user may change.
#[repr(C)]
struct Tagged {
    tag: u64,
    home: usize,
    payload: [u64; 10],
}

/// What a constructed object holds in `tag`.
const TAG: u64 = 0x6B6D_656D_5F6F_626A; // "kmem_obj"
/// What the destructor leaves in `tag`.
const DEAD: u64 = 0xDEAD_DEAD_DEAD_DEAD;

/// Constructor and destructor, counting what they do.
struct TagOps {
    ctors: AtomicU64,
    dtors: AtomicU64,
    bad_tags: AtomicU64,
    fail_next: AtomicBool,
}

impl TagOps {
    fn counts(&self) -> (u64, u64, u64) {
        (
            self.ctors.load(Ordering::Relaxed),
            self.dtors.load(Ordering::Relaxed),
            self.bad_tags.load(Ordering::Relaxed),
        )
    }
}

impl ObjectOps for TagOps {
    fn construct(&self, obj: usize, _flags: AllocFlags) -> Result<(), CtorError> {
        if self.fail_next.swap(false, Ordering::Relaxed) {
            return Err(CtorError);
        }
        let p = obj as *mut Tagged;
        // SAFETY: the cache hands the constructor a fresh object of
        // `size_of::<Tagged>()` bytes, aligned to 8, that no one else uses.
        unsafe {
            (&raw mut (*p).tag).write(TAG);
            (&raw mut (*p).home).write(obj);
        }
        self.ctors.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn destruct(&self, obj: usize) {
        let p = obj as *mut Tagged;
        // SAFETY: the cache hands the destructor an object it constructed,
        // back from its user, that no one else uses.
        let intact = unsafe { (*p).tag == TAG && (*p).home == obj };
        if !intact {
            self.bad_tags.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: as above.
        unsafe { (&raw mut (*p).tag).write(DEAD) };
        self.dtors.fetch_add(1, Ordering::Relaxed);
    }
}

/// The cache's ops (a static: the cache may outlive any stack frame).
static OPS: TagOps = TagOps {
    ctors: AtomicU64::new(0),
    dtors: AtomicU64::new(0),
    bad_tags: AtomicU64::new(0),
    fail_next: AtomicBool::new(false),
};

/// Objects per round.
const N: usize = 300;

/// Runs the cache's life from creation to destroy.
pub(crate) fn run(k: &K, ram: &Range<usize>) {
    let builder = CacheBuilder::new("nostd_tagged", size_of::<Tagged>())
        .source(k.pages())
        .ops(&OPS);
    let cache = ok(k.caches().create(builder), "create nostd_tagged");
    let mut listed = false;
    k.caches()
        .for_each(|c| listed |= c.name() == "nostd_tagged");
    ensure!(listed, "nostd_tagged: not in the cache registry");

    let mut objs = [0usize; N];
    round(&cache, k, ram, &mut objs, 0);
    let (ctors1, _, _) = OPS.counts();
    ensure!(
        ctors1 == N as u64,
        "nostd_tagged: {ctors1} constructions for {N} fresh objects"
    );
    round(&cache, k, ram, &mut objs, 1);
    let (ctors2, _, _) = OPS.counts();
    ensure!(
        ctors2 < 2 * N as u64,
        "nostd_tagged: {ctors2} constructions for two rounds; no constructed object was reused"
    );

    // Everything back to the slabs, destructed; then a failing constructor.
    if cache.magazine_stats().is_none() {
        fail(format_args!("nostd_tagged: no magazines"));
    }
    cache.flush_current();
    let given_back = cache.reap();
    let (ctors, dtors, _) = OPS.counts();
    ensure!(
        ctors == dtors,
        "nostd_tagged: {ctors} constructed, {dtors} destructed after reap"
    );
    ensure!(
        cache.stats().slabs == 0 && given_back > 0,
        "nostd_tagged: {} slabs left, {given_back:#x} bytes given back by reap",
        cache.stats().slabs
    );
    OPS.fail_next.store(true, Ordering::Relaxed);
    let refused = cache.alloc(AllocFlags::empty());
    ensure!(
        refused == Err(AllocError::Ctor),
        "nostd_tagged: failing constructor gave {refused:?}"
    );
    ensure!(
        cache.stats().ctor_fails == 1,
        "nostd_tagged: ctor_fails not counted"
    );

    // Destroy with objects out is refused and hands the cache back.
    let a = ok(cache.alloc(AllocFlags::empty()), "nostd_tagged: alloc");
    let cache = match cache.destroy() {
        Ok(()) => fail(format_args!("nostd_tagged: destroyed with an object out")),
        Err(err) => {
            ensure!(
                err.live == 1,
                "nostd_tagged: destroy saw {} live objects",
                err.live
            );
            err.cache
        }
    };
    // SAFETY: allocated just above, freed once.
    ok(unsafe { cache.free(a) }, "nostd_tagged: free");
    ok(cache.destroy(), "nostd_tagged: destroy");
    let mut listed = false;
    k.caches()
        .for_each(|c| listed |= c.name() == "nostd_tagged");
    ensure!(!listed, "nostd_tagged: still in the registry after destroy");
    let (ctors, dtors, bad) = OPS.counts();
    ensure!(
        ctors == dtors && bad == 0,
        "nostd_tagged: {ctors} constructed, {dtors} destructed, {bad} bad tags after destroy"
    );
    outln!(
        "  cache nostd_tagged: {ctors} constructed, {dtors} destructed \
         (second round reused {} objects), a failing constructor refused, destroyed",
        2 * N as u64 - ctors2
    );
}

/// Allocates `objs.len()` objects, checks they arrive constructed and in the
/// page arena, writes and checks a payload, and frees them all.
fn round(cache: &KmemCache<'_, Cpus>, k: &K, ram: &Range<usize>, objs: &mut [usize], seed: u64) {
    for (i, slot) in objs.iter_mut().enumerate() {
        let obj = ok(cache.alloc(AllocFlags::empty()), "nostd_tagged: alloc");
        ensure!(
            in_ram(ram, obj, size_of::<Tagged>())
                && k.pages().contains(obj, size_of::<Tagged>())
                && obj.is_multiple_of(8),
            "nostd_tagged: object {obj:#x} misaligned or outside the page arena"
        );
        let p = obj as *mut Tagged;
        // SAFETY: a constructed object of ours until freed.
        let (tag, home) = unsafe { ((*p).tag, (*p).home) };
        ensure!(
            tag == TAG && home == obj,
            "nostd_tagged: {obj:#x} not constructed: {tag:#x}/{home:#x}"
        );
        // SAFETY: as above; the payload is the user's to change.
        unsafe { (*p).payload = [seed ^ i as u64; 10] };
        *slot = obj;
    }
    for (i, &obj) in objs.iter().enumerate() {
        let p = obj as *const Tagged;
        // SAFETY: allocated above, not freed yet.
        let payload = unsafe { (*p).payload };
        ensure!(
            payload == [seed ^ i as u64; 10],
            "nostd_tagged: {obj:#x} overwritten"
        );
        // SAFETY: allocated above (still constructed), freed once.
        ok(unsafe { cache.free(obj) }, "nostd_tagged: free");
    }
}
