//! B4's cross-thread workload (xmalloc-style producer/consumer): the
//! calling thread allocates objects in batches of [`BATCH`] and sends each
//! batch through a bounded queue ([`QUEUE`] batches deep) to one consumer
//! thread, which frees them. Every free is a remote free: the object was
//! allocated on the other thread (and CPU slot, for kmem).
//!
//! The consumer is one thread that lives for the whole benchmark
//! ([`with_consumer`]), so no measurement pays a thread start and the std
//! platform's CPU slots stay put; each measurement hands it a job that is
//! monomorphised for the contender's allocator.

use core::alloc::{GlobalAlloc, Layout};
use core::time::Duration;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::time::Instant;

/// Objects per batch.
pub const BATCH: usize = 64;
/// Batches the queue holds.
pub const QUEUE: usize = 16;

type Job<'env> = Box<dyn FnOnce() + Send + 'env>;

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
        let (tx, rx) = sync_channel::<[usize; BATCH]>(QUEUE);
        self.jobs
            .send(Box::new(move || consume(a, layout, &rx, batches)))
            .expect("consumer thread gone");
        let start = Instant::now();
        produce(a, layout, &tx, batches);
        self.done.recv().expect("consumer thread gone");
        start.elapsed()
    }
}

fn produce<A: GlobalAlloc>(a: &A, layout: Layout, tx: &SyncSender<[usize; BATCH]>, n: u64) {
    for _ in 0..n {
        let mut b = [0usize; BATCH];
        for slot in &mut b {
            // SAFETY: callers pass a non-zero-size layout.
            let p = unsafe { a.alloc(layout) };
            assert!(!p.is_null(), "allocation failed");
            *slot = p as usize;
        }
        tx.send(b).expect("consumer gone");
    }
}

fn consume<A: GlobalAlloc>(a: &A, layout: Layout, rx: &Receiver<[usize; BATCH]>, n: u64) {
    for _ in 0..n {
        let b = rx.recv().expect("producer gone");
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

    use super::with_consumer;

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
