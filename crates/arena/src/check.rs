//! The consistency checker (Akaros' `__arena_asserter`, extended).

use core::fmt;

use kmem_btag::{AddrError, TagKind, Tree, TreeError};

use crate::arena::META;
use crate::segments::list_of;
use crate::Arena;

/// The first invariant [`Arena::check`] found broken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckError {
    /// The span or segment tree is malformed.
    Tree(TreeError),
    /// The address list is malformed.
    AddrList(AddrError),
    /// A tag is in the wrong tree, or missing from the one it must be in
    /// (spans in the span tree, free segments in the segment tree).
    Membership {
        /// Start of the offending tag.
        at: usize,
    },
    /// A segment lies outside every span, or overlaps its predecessor.
    Stray {
        /// Start of the offending segment.
        at: usize,
    },
    /// A span is not tiled exactly by its segments.
    Tiling {
        /// Start of the span.
        span: usize,
    },
    /// Two adjacent free segments were not coalesced.
    Uncoalesced {
        /// Start of the second one.
        at: usize,
    },
    /// A free segment is not on the list of its size class, or a list holds
    /// a tag that does not belong there, or the bitmap disagrees.
    FreeList {
        /// Start of the offending segment (or the list index).
        at: usize,
    },
    /// The hash does not hold exactly the allocated segments.
    Hash {
        /// Start of the offending segment.
        at: usize,
    },
    /// A running total disagrees with the segments.
    Accounting {
        /// Which total.
        what: &'static str,
        /// The running value.
        kept: usize,
        /// The value recomputed from the segments.
        found: usize,
    },
    /// Boundary tags were lost: in use plus unused differs from carved.
    LostTags {
        /// Tags carved.
        carved: usize,
        /// Tags accounted for.
        found: usize,
    },
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tree(e) => write!(f, "tree broken: {e:?}"),
            Self::AddrList(e) => write!(f, "address list broken: {e:?}"),
            Self::Membership { at } => write!(f, "tag at {at:#x} in the wrong tree"),
            Self::Stray { at } => write!(f, "segment at {at:#x} outside its span or overlapping"),
            Self::Tiling { span } => write!(f, "span at {span:#x} not tiled by its segments"),
            Self::Uncoalesced { at } => write!(f, "free segment at {at:#x} not coalesced"),
            Self::FreeList { at } => write!(f, "free list disagrees at {at:#x}"),
            Self::Hash { at } => write!(f, "allocated-segment hash disagrees at {at:#x}"),
            Self::Accounting { what, kept, found } => {
                write!(f, "{what}: kept {kept:#x}, segments say {found:#x}")
            }
            Self::LostTags { carved, found } => {
                write!(f, "{carved} tags carved, {found} accounted for")
            }
        }
    }
}

impl core::error::Error for CheckError {}

fn accounting(what: &'static str, kept: usize, found: usize) -> Result<(), CheckError> {
    if kept == found {
        Ok(())
    } else {
        Err(CheckError::Accounting { what, kept, found })
    }
}

impl Arena<'_> {
    /// Verifies every invariant of the arena: the address list and both
    /// trees, with spans in the span tree and every free segment in the
    /// segment tree; spans tiled exactly by
    /// non-overlapping segments; no two adjacent free segments in a span;
    /// every free segment on the list of its size class and the bitmap in
    /// step; every allocated segment (and nothing else) in the hash; the
    /// totals; no boundary tag lost. O(n) under the arena lock.
    pub fn check(&self) -> Result<(), CheckError> {
        let g = self.inner.lock();
        let tags = &g.tags;
        tags.verify_tree(Tree::Spans).map_err(CheckError::Tree)?;
        tags.verify_tree(Tree::Segments).map_err(CheckError::Tree)?;
        tags.verify_addr().map_err(CheckError::AddrList)?;
        let mut seg_tree = 0;

        let (mut total, mut free, mut alloc, mut imported) = (0, 0, 0, 0);
        let (mut nr_free, mut nr_alloc, mut nr_spans) = (0, 0, 0);
        let (mut meta_units, mut meta_segs) = (0, 0);
        // The span being tiled: (start, end, next unit expected).
        let mut span: Option<(usize, usize, usize)> = None;
        let mut prev_free = false;
        for id in tags.addr_iter() {
            let t = *tags.get(id);
            let tree = tags.tree_of(id);
            let tree_ok = match t.kind() {
                TagKind::Span => tree == Some(Tree::Spans),
                TagKind::Free => tree == Some(Tree::Segments),
                _ => tree != Some(Tree::Spans),
            };
            if !tree_ok {
                return Err(CheckError::Membership { at: t.start });
            }
            seg_tree += usize::from(tree == Some(Tree::Segments));
            match t.kind() {
                TagKind::Span => {
                    if let Some((s, e, at)) = span {
                        if at != e {
                            return Err(CheckError::Tiling { span: s });
                        }
                        if t.start < e {
                            return Err(CheckError::Stray { at: t.start });
                        }
                    }
                    span = Some((t.start, t.end(), t.start));
                    total += t.size;
                    nr_spans += 1;
                    if self.source().is_some() {
                        imported += t.size;
                    }
                    prev_free = false;
                }
                TagKind::Free | TagKind::Allocated => {
                    let Some((s, e, at)) = span.as_mut() else {
                        return Err(CheckError::Stray { at: t.start });
                    };
                    if t.start != *at || t.size == 0 || t.end() > *e {
                        return Err(CheckError::Stray { at: t.start });
                    }
                    let _ = s;
                    *at = t.end();
                    let is_free = t.kind() == TagKind::Free;
                    if is_free {
                        if prev_free {
                            return Err(CheckError::Uncoalesced { at: t.start });
                        }
                        if t.list as usize != list_of(t.size) || g.freemap & (1 << t.list) == 0 {
                            return Err(CheckError::FreeList { at: t.start });
                        }
                        free += t.size;
                        nr_free += 1;
                    } else {
                        if g.hash.find(tags, t.start) != Some(id) {
                            return Err(CheckError::Hash { at: t.start });
                        }
                        if t.list == META {
                            meta_units += t.size;
                            meta_segs += 1;
                        }
                        alloc += t.size;
                        nr_alloc += 1;
                    }
                    prev_free = is_free;
                }
                TagKind::Unused => return Err(CheckError::Stray { at: t.start }),
            }
        }
        if let Some((s, e, at)) = span {
            if at != e {
                return Err(CheckError::Tiling { span: s });
            }
        }

        // Free lists: members are free, in their class, and counted once.
        let mut listed = 0;
        for (i, head) in g.free.iter().enumerate() {
            if head.is_empty() == (g.freemap & (1 << i) != 0) {
                return Err(CheckError::FreeList { at: i });
            }
            for id in tags.list_iter(*head) {
                let t = tags.get(id);
                if t.kind() != TagKind::Free || list_of(t.size) != i || listed >= nr_free {
                    return Err(CheckError::FreeList { at: t.start });
                }
                listed += 1;
            }
        }
        accounting("free segments listed", nr_free, listed)?;

        let (hashed, _) = g.hash.scan(tags).map_err(|at| CheckError::Hash { at })?;
        accounting("hash entries", g.hash.len(), hashed)?;
        accounting("allocated segments", g.hash.len(), nr_alloc)?;
        accounting("total", g.total, total)?;
        accounting("total = free + allocated", g.total, free + alloc)?;
        accounting("allocated", g.allocated, alloc)?;
        accounting("imported", g.imported, imported)?;
        accounting("spans", g.spans, nr_spans)?;
        accounting("span tree", tags.tree_len(Tree::Spans), nr_spans)?;
        accounting("segment tree", tags.tree_len(Tree::Segments), seg_tree)?;
        accounting("metadata units", g.meta_units, meta_units)?;
        accounting("metadata segments", g.meta_segs, meta_segs)?;

        let unused = tags.verify_unused().ok_or(CheckError::LostTags {
            carved: tags.capacity(),
            found: 0,
        })?;
        let found = unused + tags.len();
        if found != tags.capacity() {
            return Err(CheckError::LostTags {
                carved: tags.capacity(),
                found,
            });
        }
        Ok(())
    }
}
