//! Checking a tree: order, links, membership marks, colours and counts.

use crate::tag::{TagId, NIL};
use crate::tree::Tree;
use crate::Tags;

/// A violated tree invariant, found by [`Tags::verify_tree`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TreeError {
    /// Two tags are out of address order (or share start and rank).
    Order(TagId, TagId),
    /// A child's parent link does not point back at its parent.
    ParentLink(TagId),
    /// A member's `maxkey` is not the largest key of its subtree.
    MaxKey(TagId),
    /// A red tag has a red child.
    RedRed(TagId),
    /// Paths from a tag to its leaves have different black heights.
    BlackHeight(TagId),
    /// The root is red.
    RedRoot,
    /// The number of tags reached differs from the count kept.
    Count {
        /// Tags the set believes are in the tree.
        expected: usize,
        /// Tags reached by walking it.
        found: usize,
    },
}

impl Tags {
    /// Checks `tree`: address order, parent links, membership marks,
    /// red-black rules and the tag count. O(n).
    pub fn verify_tree(&self, tree: Tree) -> Result<(), TreeError> {
        let root = self.roots[tree as usize];
        if self.is_red(root) {
            return Err(TreeError::RedRoot);
        }
        if root != NIL && self.parent(root) != NIL {
            return Err(TreeError::ParentLink(TagId(root)));
        }
        let mut count = 0;
        self.verify_node(root, tree, &mut count)?;
        if count != self.in_tree[tree as usize] {
            return Err(TreeError::Count {
                expected: self.in_tree[tree as usize],
                found: count,
            });
        }
        let mut prev: Option<TagId> = None;
        for id in self.iter(tree) {
            if let Some(p) = prev {
                if !self.less(p.0, id.0) {
                    return Err(TreeError::Order(p, id));
                }
            }
            prev = Some(id);
        }
        Ok(())
    }

    /// Returns the black height below `x`, checking links and colours.
    /// Recursion depth is bounded by the tree height (at most ~2 log2 n).
    fn verify_node(&self, x: u32, tree: Tree, count: &mut usize) -> Result<usize, TreeError> {
        if x == NIL {
            return Ok(1);
        }
        *count += 1;
        if *count > self.in_tree[tree as usize] {
            return Err(TreeError::Count {
                expected: self.in_tree[tree as usize],
                found: *count,
            });
        }
        if self.store.get(TagId(x)).tree & !crate::tree::RED != tree as u8 {
            return Err(TreeError::ParentLink(TagId(x)));
        }
        let (l, r) = (self.left(x), self.right(x));
        for child in [l, r] {
            if child != NIL {
                if self.parent(child) != x {
                    return Err(TreeError::ParentLink(TagId(child)));
                }
                if self.is_red(x) && self.is_red(child) {
                    return Err(TreeError::RedRed(TagId(x)));
                }
            }
        }
        if l != NIL && !self.less(l, x) {
            return Err(TreeError::Order(TagId(l), TagId(x)));
        }
        if r != NIL && !self.less(x, r) {
            return Err(TreeError::Order(TagId(x), TagId(r)));
        }
        let t = self.store.get(TagId(x));
        let want = [l, r]
            .into_iter()
            .filter(|&c| c != NIL)
            .map(|c| self.store.get(TagId(c)).maxkey)
            .fold(t.key(), u8::max);
        if t.maxkey != want {
            return Err(TreeError::MaxKey(TagId(x)));
        }
        let hl = self.verify_node(l, tree, count)?;
        let hr = self.verify_node(r, tree, count)?;
        if hl != hr {
            return Err(TreeError::BlackHeight(TagId(x)));
        }
        Ok(hl + usize::from(!self.is_red(x)))
    }
}
