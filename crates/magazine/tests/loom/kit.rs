//! The loom models' kit: running a model and counting its executions, the
//! magazine source, a platform following `ThreadCpus`' protocol, the layer
//! leaked to `'static` for loom's threads, and the conservation check.

use core::cell::Cell;
use core::marker::PhantomData;
use core::ptr::NonNull;
// Counters outside the models (loom does not track them).
use core::sync::atomic::{AtomicUsize as PlainAtomicUsize, Ordering as PlainOrdering};
use std::time::Instant;

use kmem_magazine::{
    Cpu, CpuCache, CpuGuard, MagazineSource, MagazineStats, Magazines, ResizePolicy, SlotHook,
    MAGAZINE_ALIGN,
};
use loom::alloc::Layout;
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::Mutex;
use loom::thread::{self, JoinHandle};

/// Objects larger than this start with one-round magazines: every second
/// operation visits the depot, which keeps the models small.
pub(crate) const ONE_ROUND: usize = 4096;

/// Runs `model` under loom with `preemptions` as the preemption bound
/// (`None`: every interleaving; `LOOM_MAX_PREEMPTIONS` overrides it) and
/// prints how many executions loom explored. Returns that number.
pub(crate) fn check(
    name: &str,
    preemptions: Option<usize>,
    model: impl Fn() + Sync + Send + 'static,
) -> usize {
    let runs = std::sync::Arc::new(PlainAtomicUsize::new(0));
    let counter = runs.clone();
    let mut builder = loom::model::Builder::new();
    if std::env::var_os("LOOM_MAX_PREEMPTIONS").is_none() {
        builder.preemption_bound = preemptions;
    }
    let start = Instant::now();
    builder.check(move || {
        counter.fetch_add(1, PlainOrdering::Relaxed);
        model();
    });
    let runs = runs.load(PlainOrdering::Relaxed);
    println!(
        "loom-model {name}: {runs} executions, preemption bound {}, {:.1} s",
        builder
            .preemption_bound
            .map_or("none (exhaustive)".into(), |b| b.to_string()),
        start.elapsed().as_secs_f64()
    );
    runs
}

/// Two outcomes a model must each reach in some execution, counted over
/// every execution loom explores (outside the model: loom does not track
/// these counters).
#[derive(Clone, Default)]
pub(crate) struct Outcomes(std::sync::Arc<[PlainAtomicUsize; 2]>);

impl Outcomes {
    /// Counts `n` more of outcome `which` (0 or 1).
    pub(crate) fn add(&self, which: usize, n: usize) {
        self.0[which].fetch_add(n, PlainOrdering::Relaxed);
    }
}

/// [`check`] for a model that counts two outcomes: prints `loom-model
/// <name>: outcomes: <n0> <said[0]>, <n1> <said[1]>` and fails with
/// `missing[i]` unless outcome `i` was reached.
pub(crate) fn check_outcomes(
    name: &str,
    preemptions: Option<usize>,
    said: [&str; 2],
    missing: [&str; 2],
    model: impl Fn(&Outcomes) + Sync + Send + 'static,
) {
    let outcomes = Outcomes::default();
    let seen = outcomes.clone();
    check(name, preemptions, move || model(&outcomes));
    let n = seen.0.each_ref().map(|c| c.load(PlainOrdering::Relaxed));
    println!(
        "loom-model {name}: outcomes: {} {}, {} {}",
        n[0], said[0], n[1], said[1]
    );
    for (n, missing) in n.into_iter().zip(missing) {
        assert!(n > 0, "{missing}");
    }
}

/// Magazine memory through `loom::alloc`, whose leak check fails an
/// execution that ends with a magazine still allocated; at most `limit`
/// magazines at a time.
pub(crate) struct Heap {
    live: PlainAtomicUsize,
    limit: usize,
}

fn layout(bytes: usize) -> Layout {
    Layout::from_size_align(bytes, MAGAZINE_ALIGN).unwrap()
}

// SAFETY: fresh loom heap blocks of the magazine size and alignment.
unsafe impl MagazineSource for Heap {
    fn alloc_magazine(&self, bytes: usize) -> Option<NonNull<u8>> {
        if self.live.load(PlainOrdering::Relaxed) == self.limit {
            return None;
        }
        self.live.fetch_add(1, PlainOrdering::Relaxed);
        // SAFETY: the layout has a non-zero size.
        NonNull::new(unsafe { loom::alloc::alloc(layout(bytes)) })
    }

    unsafe fn free_magazine(&self, mem: NonNull<u8>, bytes: usize) {
        self.live.fetch_sub(1, PlainOrdering::Relaxed);
        // SAFETY: allocated above with this layout, and no longer used.
        unsafe { loom::alloc::dealloc(mem.as_ptr(), layout(bytes)) }
    }
}

loom::thread_local! {
    /// The slot a thread claimed on a `Threads` platform.
    static SLOT: Cell<usize> = Cell::new(usize::MAX);
}

/// A platform following `ThreadCpus`' protocol for exclusive slots: a
/// thread claims a slot with an acquire CAS, pins it with a thread-local
/// read, and on exit runs the registered hooks for it under the hook lock,
/// then gives it back with a release store.
pub(crate) struct Threads<const N: usize> {
    owned: [AtomicBool; N],
    hooks: Mutex<Vec<HookPtr>>,
    /// `fence_slots` runs a sequentially consistent fence (false: it only
    /// says it did, to show that the purge model catches a platform
    /// without the fence).
    fenced: bool,
}

/// A registered hook (valid while registered: the `Cpu::register` contract).
struct HookPtr(*const SlotHook);

// SAFETY: only followed under the hook lock, while registered.
unsafe impl Send for HookPtr {}

impl<const N: usize> Threads<N> {
    pub(crate) fn new() -> Self {
        Self {
            owned: core::array::from_fn(|_| AtomicBool::new(false)),
            hooks: Mutex::new(Vec::new()),
            fenced: true,
        }
    }

    /// A platform whose `fence_slots` claims a fence it does not run,
    /// breaking the `Cpu` contract (for a model that must fail).
    pub(crate) fn unfenced() -> Self {
        Self {
            fenced: false,
            ..Self::new()
        }
    }

    /// The calling thread takes `slot`, which must be free.
    pub(crate) fn claim(&self, slot: usize) {
        let won = self.owned[slot]
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok();
        assert!(won, "slot {slot} is owned by another thread");
        SLOT.with(|s| s.set(slot));
    }

    /// The calling thread exits: its slot is flushed by every hook, then
    /// freed.
    pub(crate) fn exit(&self) {
        let slot = SLOT.with(|s| s.replace(usize::MAX));
        let hooks = self.hooks.lock().unwrap();
        for hook in hooks.iter() {
            // SAFETY: this thread owns `slot` until the store below, and a
            // hook stays valid while it is registered, which `unregister`
            // cannot change while the hook lock is held.
            unsafe { (*hook.0).call(slot) };
        }
        drop(hooks);
        self.owned[slot].store(false, Ordering::Release);
    }
}

/// The guard of [`Threads`]: the claimed slot, not `Send`.
pub(crate) struct ThreadGuard(usize, PhantomData<*const ()>);

impl CpuGuard for ThreadGuard {
    fn slot(&self) -> usize {
        self.0
    }
}

// SAFETY: a slot is pinned only by the thread that claimed it (`claim`
// refuses an owned slot, `exit` frees it after the hooks ran on that thread);
// hooks run on the owning thread under the hook lock, which `unregister`
// takes; `fence_slots` is a sequentially consistent fence, which loom pairs
// with the one the layer's slot holders run under loom where they otherwise
// have a compiler fence (`Threads::unfenced` breaks this on purpose).
unsafe impl<const N: usize> Cpu for Threads<N> {
    type Guard<'a> = ThreadGuard;

    fn slots(&self) -> usize {
        N
    }

    fn pin(&self) -> ThreadGuard {
        let slot = SLOT.with(Cell::get);
        assert!(slot < N, "pinned without a claimed slot");
        ThreadGuard(slot, PhantomData)
    }

    fn try_pin(&self) -> Option<ThreadGuard> {
        let slot = SLOT.with(Cell::get);
        (slot < N).then_some(ThreadGuard(slot, PhantomData))
    }

    fn now_ns(&self) -> u64 {
        0
    }

    fn fence_slots(&self) -> bool {
        if self.fenced {
            loom::sync::atomic::fence(Ordering::SeqCst);
        }
        true
    }

    unsafe fn register(&self, hook: &SlotHook) {
        self.hooks.lock().unwrap().push(HookPtr(hook));
    }

    fn unregister(&self, hook: &SlotHook) {
        let target: *const SlotHook = hook;
        self.hooks.lock().unwrap().retain(|h| h.0 != target);
    }
}

/// One execution's layer, leaked to `'static` so loom's threads can share
/// it, and reclaimed by [`Rig::finish`] once they are joined.
pub(crate) struct Rig<C: Cpu + 'static> {
    cpu: NonNull<C>,
    slots: NonNull<[CpuCache]>,
    heap: NonNull<Heap>,
    mags: NonNull<Magazines<'static, C>>,
}

impl<C: Cpu + 'static> Rig<C> {
    /// A layer on `cpu` for objects of `obj_size` bytes whose magazine
    /// source holds at most `magazines`.
    pub(crate) fn new(cpu: C, obj_size: usize, policy: ResizePolicy, magazines: usize) -> Self {
        let cpu = NonNull::from(Box::leak(Box::new(cpu)));
        // SAFETY: leaked above, freed in `finish` after the layer.
        let cpu_ref: &'static C = unsafe { cpu.as_ref() };
        let slots: Box<[CpuCache]> = (0..cpu_ref.slots()).map(|_| CpuCache::new()).collect();
        let slots = NonNull::from(Box::leak(slots));
        // SAFETY: leaked above; only the layer uses it until `finish`.
        let slots_ref: &'static mut [CpuCache] = unsafe { &mut *slots.as_ptr() };
        let mags = Magazines::with_policy(cpu_ref, slots_ref, obj_size, policy).unwrap();
        Self {
            cpu,
            slots,
            heap: NonNull::from(Box::leak(Box::new(Heap {
                live: PlainAtomicUsize::new(0),
                limit: magazines,
            }))),
            mags: NonNull::from(Box::leak(Box::new(mags))),
        }
    }

    pub(crate) fn cpu(&self) -> &'static C {
        // SAFETY: alive until `finish`, which consumes the rig.
        unsafe { self.cpu.as_ref() }
    }

    pub(crate) fn heap(&self) -> &'static Heap {
        // SAFETY: as in `cpu`.
        unsafe { self.heap.as_ref() }
    }

    pub(crate) fn mags(&self) -> &'static Magazines<'static, C> {
        // SAFETY: as in `cpu`.
        unsafe { self.mags.as_ref() }
    }

    /// Drains the layer (every slot and the depot) and frees it; returns
    /// the rounds it held and its last counters. Call after joining every
    /// thread that used it, and use no reference from it afterwards.
    pub(crate) fn finish(self) -> (Vec<usize>, MagazineStats) {
        // SAFETY: the threads are joined; the caller holds no reference.
        let mags = unsafe { &mut *self.mags.as_ptr() };
        let mut rounds = Vec::new();
        // SAFETY: the fixture's heap is the layer's only magazine source.
        unsafe { mags.drain_all(self.heap(), |obj| rounds.push(obj)) };
        let stats = mags.stats();
        assert_eq!(stats.magazines_live(), 0, "a magazine is still out");
        assert_eq!(self.heap().live.load(PlainOrdering::Relaxed), 0);
        // SAFETY: each was leaked in `new` and is freed once, the layer
        // (which borrows the others) first.
        unsafe {
            drop(Box::from_raw(self.mags.as_ptr()));
            drop(Box::from_raw(self.slots.as_ptr()));
            drop(Box::from_raw(self.heap.as_ptr()));
            drop(Box::from_raw(self.cpu.as_ptr()));
        }
        (rounds, stats)
    }
}

/// Fails unless `out` holds every round of `introduced` exactly once.
#[track_caller]
pub(crate) fn assert_conserved(introduced: &[usize], mut out: Vec<usize>) {
    let mut want = introduced.to_vec();
    want.sort_unstable();
    out.sort_unstable();
    assert_eq!(out, want, "a round was lost or duplicated");
}

/// Ends a model once its threads are joined: what they held and gave below
/// (`parts`) and what the rig still holds must be every round of
/// `introduced` exactly once. Returns the rig's last counters.
#[track_caller]
pub(crate) fn conclude<C: Cpu + 'static>(
    rig: Rig<C>,
    parts: impl IntoIterator<Item = Held>,
    introduced: &[usize],
) -> MagazineStats {
    let mut out = Vec::new();
    for (held, below) in parts {
        out.extend(held);
        out.extend(below);
    }
    let (drained, stats) = rig.finish();
    out.extend(drained);
    assert_conserved(introduced, out);
    stats
}

/// Spawns a model thread that runs `f(held, below)` from empty lists of the
/// rounds it holds and those it gave below, and answers both.
pub(crate) fn spawn_held(
    f: impl FnOnce(&mut Vec<usize>, &mut Vec<usize>) + Send + 'static,
) -> JoinHandle<Held> {
    thread::spawn(move || {
        let (mut held, mut below) = (Vec::new(), Vec::new());
        f(&mut held, &mut below);
        (held, below)
    })
}

/// Takes up to two rounds out of the layer into `held` and frees the last
/// one taken back (see [`free_or_keep`]).
pub(crate) fn take_two_free_one<C: Cpu>(
    m: &Magazines<'_, C>,
    heap: &Heap,
    held: &mut Vec<usize>,
    below: &mut Vec<usize>,
) {
    held.extend(m.alloc());
    held.extend(m.alloc());
    if let Some(obj) = held.pop() {
        free_or_keep(m, heap, obj, below);
    }
}

/// Frees each of `objs` into the layer (see [`free_or_keep`]), then takes
/// one round out of it into `held`.
pub(crate) fn free_then_take<C: Cpu>(
    m: &Magazines<'_, C>,
    heap: &Heap,
    objs: &[usize],
    held: &mut Vec<usize>,
    below: &mut Vec<usize>,
) {
    for &obj in objs {
        free_or_keep(m, heap, obj, below);
    }
    held.extend(m.alloc());
}

/// Frees `obj` into the layer; a refusal hands it back, as to the layer
/// below, and it is kept in `below`.
pub(crate) fn free_or_keep<C: Cpu>(
    m: &Magazines<'_, C>,
    heap: &Heap,
    obj: usize,
    below: &mut Vec<usize>,
) {
    if let Err(obj) = put(m, heap, obj) {
        below.push(obj);
    }
}

/// Frees `obj` into the layer; every layer of the models takes its
/// magazines from the fixture's one heap.
pub(crate) fn put<C: Cpu>(m: &Magazines<'_, C>, heap: &Heap, obj: usize) -> Result<(), usize> {
    // SAFETY: `heap` is the layer's only magazine source.
    unsafe { m.free(obj, heap) }
}

/// Drains the depot; see [`put`].
pub(crate) fn drain_depot<C: Cpu>(
    m: &Magazines<'_, C>,
    heap: &Heap,
    sink: impl FnMut(usize),
) -> usize {
    // SAFETY: as in `put`.
    unsafe { m.drain_depot(heap, sink) }
}

/// A thread's allocations and what it gave below.
pub(crate) type Held = (Vec<usize>, Vec<usize>);

/// Runs the depot's working-set trim; see [`put`].
pub(crate) fn trim<C: Cpu>(
    m: &Magazines<'_, C>,
    heap: &Heap,
    mut sink: impl FnMut(usize),
) -> usize {
    // SAFETY: as in `put`.
    unsafe { m.trim(heap, |batch| batch.for_each(&mut sink)) }
}

/// A batch refill that loads `rounds` (at most the room it is given); see
/// [`put`].
pub(crate) fn refill<C: Cpu>(m: &Magazines<'_, C>, heap: &Heap, rounds: &[usize]) -> Option<usize> {
    // SAFETY: as in `put`; the rounds are the caller's, introduced once.
    unsafe {
        m.refill(heap, |sink| {
            assert!(
                rounds.len() <= sink.room(),
                "the model loads no more than the room"
            );
            for &r in rounds {
                assert!(sink.push(r));
            }
        })
    }
}

/// Purges every CPU's magazines; see [`put`].
pub(crate) fn purge<C: Cpu>(
    m: &Magazines<'_, C>,
    heap: &Heap,
    sink: impl FnMut(usize),
) -> kmem_magazine::Purge {
    // SAFETY: as in `put`.
    unsafe { m.purge(heap, sink) }
}

/// On `slot`, frees rounds 0 and 1 into one-round magazines and parks them
/// in the depot, then runs a first upkeep pass, which only ends the
/// interval in which they came: the next pass may trim them.
pub(crate) fn park_idle<const N: usize>(
    cpu: &Threads<N>,
    heap: &Heap,
    m: &Magazines<'_, Threads<N>>,
    slot: usize,
) {
    cpu.claim(slot);
    for obj in [0, 1] {
        put(m, heap, obj).unwrap();
    }
    m.flush_current();
    trim(m, heap, |_| panic!("the first pass only ends an interval"));
}
