//! Decoding fuzzer bytes into a setup and a bounded list of actions, fault
//! plans as input, and the report printed when a harness panics.

use core::cell::Cell;
use core::fmt::Debug;

use arbitrary::{Arbitrary, Unstructured};
use kmem_physmem::faults;

/// Most actions one input runs; the rest of the bytes are ignored.
pub const MAX_ACTIONS: usize = 256;

/// A fault schedule as fuzz input (see [`faults::Plan`]): small numbers, so
/// that failures come often enough to matter.
#[derive(Arbitrary, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Plan {
    /// Every attempt succeeds.
    #[default]
    Never,
    /// Attempts `k, 2k, ...` fail, with `k` in `1..=7`.
    EveryKth(u8),
    /// The first `n` attempts succeed, with `n` in `0..=7`; the rest fail.
    After(u8),
}

impl Plan {
    /// The schedule this stands for.
    pub fn faults(self) -> faults::Plan {
        match self {
            Self::Never => faults::Plan::Never,
            Self::EveryKth(k) => faults::Plan::EveryKth(u64::from(k % 7) + 1),
            Self::After(n) => faults::Plan::After(u64::from(n % 8)),
        }
    }
}

/// Decodes `data` into a setup (its default if the bytes run out at once)
/// and at most [`MAX_ACTIONS`] actions, stopping where the bytes end.
pub(crate) fn decode<'a, S, A>(data: &'a [u8]) -> (S, Vec<A>)
where
    S: Arbitrary<'a> + Default,
    A: Arbitrary<'a>,
{
    let mut u = Unstructured::new(data);
    let setup = S::arbitrary(&mut u).unwrap_or_default();
    let mut actions = Vec::new();
    while actions.len() < MAX_ACTIONS && !u.is_empty() {
        match A::arbitrary(&mut u) {
            Ok(a) => actions.push(a),
            Err(_) => break,
        }
    }
    (setup, actions)
}

/// Prints the setup and the actions run so far if the harness panics while
/// this is alive, so a crash report says what led to it.
pub(crate) struct Report<'r, S: Debug, A: Debug> {
    target: &'static str,
    setup: &'r S,
    actions: &'r [A],
    step: Cell<Option<usize>>,
}

impl<'r, S: Debug, A: Debug> Report<'r, S, A> {
    pub(crate) fn new(target: &'static str, setup: &'r S, actions: &'r [A]) -> Self {
        Self {
            target,
            setup,
            actions,
            step: Cell::new(None),
        }
    }

    /// The action now running (`None`: setup or the final checks).
    pub(crate) fn at(&self, step: Option<usize>) {
        self.step.set(step);
    }
}

impl<S: Debug, A: Debug> Drop for Report<'_, S, A> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let ran = self.step.get().map_or(self.actions.len(), |s| s + 1);
        let at = match self.step.get() {
            Some(s) => format!("action {s}"),
            None => "setup or final checks".to_owned(),
        };
        eprintln!(
            "kmem-fuzz {}: failed at {at}; setup {:?}; actions run:",
            self.target, self.setup
        );
        for (i, a) in self.actions[..ran.min(self.actions.len())]
            .iter()
            .enumerate()
        {
            eprintln!("  {i:3}: {a:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Arbitrary, Debug, Default, PartialEq)]
    struct Setup(u8);

    #[test]
    fn decode_is_bounded_and_stops_with_the_bytes() {
        let (s, a): (Setup, Vec<u8>) = decode(&[5, 1, 2, 3]);
        assert_eq!((s, a), (Setup(5), vec![1, 2, 3]));
        let (s, a): (Setup, Vec<u8>) = decode(&[]);
        assert_eq!((s, a.len()), (Setup(0), 0));
        let many = vec![9u8; 4 * MAX_ACTIONS];
        let (_, a): (Setup, Vec<u8>) = decode(&many);
        assert_eq!(a.len(), MAX_ACTIONS);
    }

    #[test]
    fn plans_stay_small() {
        assert_eq!(Plan::EveryKth(0).faults(), faults::Plan::EveryKth(1));
        assert_eq!(Plan::EveryKth(13).faults(), faults::Plan::EveryKth(7));
        assert_eq!(Plan::After(255).faults(), faults::Plan::After(7));
        assert_eq!(Plan::Never.faults(), faults::Plan::Never);
    }
}
