//! Counters of a magazine layer.

/// A snapshot of a [`Magazines`](crate::Magazines) layer's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MagazineStats {
    /// The depot's current fill target.
    pub magsize: usize,
    /// The fill target the layer started with (by object size).
    pub start_magsize: usize,
    /// The largest fill target ([`MAGAZINE_ROUNDS`](crate::MAGAZINE_ROUNDS)).
    pub max_magsize: usize,
    /// Not-empty magazines in the depot.
    pub not_empty: usize,
    /// Empty magazines in the depot.
    pub empty: usize,
    /// Rounds held by the depot's not-empty magazines.
    pub depot_rounds: usize,
    /// Allocations served by CPU magazines.
    pub cpu_allocs: u64,
    /// Frees absorbed by CPU magazines (deferred ones included).
    pub cpu_frees: u64,
    /// Frees made by operations that interrupted another of their context
    /// (signal or interrupt handlers), kept on their slot's deferred stack.
    pub deferred_frees: u64,
    /// Depot lock acquisitions by allocations and frees looking for a
    /// magazine (exchanges, and looks that found nothing); not the puts of
    /// fresh magazines, nor the upkeep's, drains' or statistics' holds.
    pub depot_locks: u64,
    /// Contended depot lock acquisitions.
    pub contended: u64,
    /// Times the depot's fill target grew.
    pub resizes: u64,
    /// Not-empty magazines the depot handed to CPUs.
    pub depot_not_empty_out: u64,
    /// Empty magazines the depot handed to CPUs.
    pub depot_empty_out: u64,
    /// Magazines allocated from the magazine source.
    pub magazines_allocated: u64,
    /// Magazines given back to the magazine source.
    pub magazines_freed: u64,
    /// Bytes of the magazines alive (their sizes vary: see
    /// [`MAGAZINE_SIZES`](crate::MAGAZINE_SIZES)).
    pub magazine_bytes: u64,
    /// Of those, magazines the working-set trim gave back
    /// ([`Magazines::trim`](crate::Magazines::trim)).
    pub magazines_trimmed: u64,
    /// Batch refills: a CPU's empty magazine loaded from the layer below
    /// in one pass ([`Magazines::refill`](crate::Magazines::refill)).
    pub refills: u64,
    /// Batch flushes: a CPU's full magazine given back to the layer below
    /// in one pass when no empty one could be had (counted when it gave
    /// rounds back)
    /// ([`Magazines::free_after_flush`](crate::Magazines::free_after_flush)).
    pub flushes: u64,
    /// Frees handed back because the depot held its cap
    /// ([`Magazines::set_depot_cap`](crate::Magazines::set_depot_cap)).
    pub depot_capped: u64,
    /// Purges of every CPU's magazines that claimed slots
    /// ([`Magazines::purge`](crate::Magazines::purge)).
    pub purges: u64,
    /// Slots whose magazines a purge took, their holders idle (by
    /// [`purge_idle`](crate::Magazines::purge_idle) too).
    pub purge_slots_taken: u64,
    /// Slots whose holders a purge asked to flush at their next operation.
    pub purge_slots_asked: u64,
    /// Such requests the holders carried out.
    pub purge_requests_honoured: u64,
}

impl MagazineStats {
    /// Magazines alive: in the depot or loaded on a CPU.
    pub fn magazines_live(&self) -> u64 {
        self.magazines_allocated - self.magazines_freed
    }
}
