//! B4's cross-thread workload (xmalloc-style producer/consumer): the
//! calling thread allocates objects in batches of [`BATCH`] and sends each
//! batch through a bounded queue ([`QUEUE`] batches deep) to one consumer
//! thread, which frees them. Every free is a remote free: the object was
//! allocated on the other thread (and CPU slot, for kmem).
//!
//! The consumer is one thread that lives for the whole benchmark
//! ([`with_consumer`]), so no measurement pays a thread start and the std
//! platform's CPU slots stay put; each measurement hands it a job that is
//! monomorphised for the contender's allocator. The queue is a
//! single-producer single-consumer ring ([`Ring`]) whose ends spin (then
//! yield) instead of sleeping: with a blocking channel, the futex wake-ups
//! of a consumer that keeps catching up cost more than the allocations and
//! change with the allocator's speed.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::hint::spin_loop;
use core::sync::atomic::{AtomicUsize, Ordering};
use core::time::Duration;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::time::Instant;

/// Objects per batch.
pub const BATCH: usize = 64;
/// Batches the queue holds.
pub const QUEUE: usize = 16;

type Job<'env> = Box<dyn FnOnce() + Send + 'env>;

/// A counter on its own cache line.
#[repr(align(64))]
struct Padded(AtomicUsize);

/// A bounded single-producer single-consumer queue of batches.
pub struct Ring {
    slots: Box<[UnsafeCell<[usize; BATCH]>]>,
    /// Batches taken (written by the consumer).
    head: Padded,
    /// Batches put (written by the producer).
    tail: Padded,
}

// SAFETY: one producer calls `push` and one consumer calls `pop` (the
// callers' contract); a slot is written only while it lies outside
// `head..tail` (not visible to the consumer) and read only while inside
// (not writable by the producer), with Release/Acquire on the counters
// ordering the slot accesses.
unsafe impl Sync for Ring {}

/// Waits for `ready`, spinning first, then yielding the CPU.
fn wait(mut ready: impl FnMut() -> bool) {
    let mut spins = 0u32;
    while !ready() {
        if spins < 1 << 12 {
            spins += 1;
            spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

impl Ring {
    /// An empty ring of `capacity` batches.
    pub fn new(capacity: usize) -> Self {
        Self {
            slots: (0..capacity).map(|_| UnsafeCell::new([0; BATCH])).collect(),
            head: Padded(AtomicUsize::new(0)),
            tail: Padded(AtomicUsize::new(0)),
        }
    }

    /// Puts a batch (producer side only), waiting while the ring is full.
    pub fn push(&self, b: [usize; BATCH]) {
        let t = self.tail.0.load(Ordering::Relaxed);
        wait(|| t - self.head.0.load(Ordering::Acquire) < self.slots.len());
        // SAFETY: slot `t` is outside head..tail, so the consumer does not
        // read it, and only this (the one) producer writes slots.
        unsafe { *self.slots[t % self.slots.len()].get() = b };
        self.tail.0.store(t + 1, Ordering::Release);
    }

    /// Takes a batch (consumer side only), waiting while the ring is empty.
    pub fn pop(&self) -> [usize; BATCH] {
        let h = self.head.0.load(Ordering::Relaxed);
        wait(|| self.tail.0.load(Ordering::Acquire) > h);
        // SAFETY: slot `h` is inside head..tail: the producer wrote it
        // (Acquire above pairs with its Release) and will not write it
        // again until `head` passes it.
        let b = unsafe { *self.slots[h % self.slots.len()].get() };
        self.head.0.store(h + 1, Ordering::Release);
        b
    }
}

/// The consumer thread's job queue.
pub struct Consumer<'env> {
    jobs: SyncSender<Job<'env>>,
    done: Receiver<()>,
}

/// Starts the consumer thread, runs `f` with it, then stops it.
pub fn with_consumer<'env, R>(f: impl FnOnce(&Consumer<'env>) -> R) -> R {
    let (jobs, job_rx) = sync_channel::<Job<'env>>(1);
    let (done_tx, done) = sync_channel::<()>(1);
    std::thread::scope(|s| {
        s.spawn(move || {
            for job in job_rx {
                job();
                if done_tx.send(()).is_err() {
                    break;
                }
            }
        });
        let c = Consumer { jobs, done };
        let r = f(&c);
        drop(c);
        r
    })
}

impl<'env> Consumer<'env> {
    /// Moves `batches` batches of `layout` objects from this thread to the
    /// consumer through `a`; returns the time from the first allocation to
    /// the consumer's last free.
    ///
    /// # Panics
    /// Panics if an allocation fails or the consumer thread died.
    pub fn measure<A: GlobalAlloc + Sync>(
        &self,
        a: &'env A,
        layout: Layout,
        batches: u64,
    ) -> Duration {
        let ring = std::sync::Arc::new(Ring::new(QUEUE));
        let theirs = std::sync::Arc::clone(&ring);
        self.jobs
            .send(Box::new(move || consume(a, layout, &theirs, batches)))
            .expect("consumer thread gone");
        let start = Instant::now();
        produce(a, layout, &ring, batches);
        self.done.recv().expect("consumer thread gone");
        start.elapsed()
    }
}

fn produce<A: GlobalAlloc>(a: &A, layout: Layout, ring: &Ring, n: u64) {
    for _ in 0..n {
        let mut b = [0usize; BATCH];
        for slot in &mut b {
            // SAFETY: callers pass a non-zero-size layout.
            let p = unsafe { a.alloc(layout) };
            assert!(!p.is_null(), "allocation failed");
            *slot = p as usize;
        }
        ring.push(b);
    }
}

fn consume<A: GlobalAlloc>(a: &A, layout: Layout, ring: &Ring, n: u64) {
    for _ in 0..n {
        let b = ring.pop();
        for p in b {
            // SAFETY: allocated by the producer with `layout`, sent here
            // once, freed once.
            unsafe { a.dealloc(p as *mut u8, layout) };
        }
    }
}

#[cfg(test)]
mod tests {
    use core::alloc::Layout;
    use std::alloc::System;

    use super::{with_consumer, Ring, BATCH};

    #[test]
    fn ring_keeps_order_across_threads() {
        let ring = Ring::new(3);
        std::thread::scope(|s| {
            s.spawn(|| {
                for i in 0..1000 {
                    ring.push([i; BATCH]);
                }
            });
            for i in 0..1000 {
                assert_eq!(ring.pop(), [i; BATCH]);
            }
        });
    }

    #[test]
    fn objects_cross_over() {
        let l = Layout::from_size_align(64, 8).unwrap();
        let d = with_consumer(|c| {
            c.measure(&System, l, 10);
            c.measure(&System, l, 100)
        });
        assert!(d.as_nanos() > 0);
    }
}
