//! The address-ordered red-black tree over all span and segment tags.
//!
//! Order: by `start`; at equal starts a span comes before the segment that
//! shares its start. Parent links make `next`/`prev` O(1) amortized.
//!
//! The tree is augmented: every member keeps the largest [`Tag::key`] of its
//! subtree (`maxkey`), kept exact by every insert, removal and rotation and
//! by [`Tags::set_kind`] / [`Tags::refresh_key`] when a member's key
//! changes. [`Tags::first_keyed_from`] and [`Tags::last_keyed_below`] use it
//! to find the nearest member with a key of at least `k` in O(log n),
//! skipping whole subtrees that hold none (an arena's allocated segments,
//! free segments of smaller size classes).

use crate::tag::Tag;

use crate::tag::{TagId, TagKind, NIL};
use crate::Tags;

/// Which of a set's two address-ordered trees a tag is in.
///
/// Two trees let an arena keep its spans apart from its segments, so each
/// search walks only what it needs. A tag is in at most one tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tree {
    /// The first tree (the arena keeps free segments here).
    Segments = 0,
    /// The second tree (the arena keeps spans here).
    Spans = 1,
}

/// `Tag::tree` value of a tag in no tree.
pub(crate) const NO_TREE: u8 = 0x7f;
/// `Tag::tree` bit of a red member.
pub(crate) const RED: u8 = 0x80;

/// A side of a member (its left or its right link), for the tree code that
/// is written once for both of its mirror images: a function generic over
/// `S: Side` is compiled once for each side, and `S::Other` is the opposite
/// side, so it costs what two hand-written mirrors cost.
trait Side {
    /// The opposite side.
    type Other: Side;
    /// True for [`Left`].
    const LEFT: bool;
    /// The link on this side.
    fn child(t: &Tag) -> u32;
    /// The link on this side, to set.
    fn child_mut(t: &mut Tag) -> &mut u32;
}

/// The left side: lower addresses.
enum Left {}
/// The right side: higher addresses.
enum Right {}

impl Side for Left {
    type Other = Right;
    const LEFT: bool = true;
    #[inline(always)]
    fn child(t: &Tag) -> u32 {
        t.left
    }
    #[inline(always)]
    fn child_mut(t: &mut Tag) -> &mut u32 {
        &mut t.left
    }
}

impl Side for Right {
    type Other = Left;
    const LEFT: bool = false;
    #[inline(always)]
    fn child(t: &Tag) -> u32 {
        t.right
    }
    #[inline(always)]
    fn child_mut(t: &mut Tag) -> &mut u32 {
        &mut t.right
    }
}

/// Sort rank at equal starts: spans first.
#[inline]
fn rank(kind: TagKind) -> u8 {
    u8::from(kind != TagKind::Span)
}

impl Tags {
    #[inline]
    pub(crate) fn left(&self, x: u32) -> u32 {
        self.store.get(TagId(x)).left
    }
    #[inline]
    pub(crate) fn right(&self, x: u32) -> u32 {
        self.store.get(TagId(x)).right
    }
    /// The child of `x` on side `S`.
    #[inline]
    fn child<S: Side>(&self, x: u32) -> u32 {
        S::child(self.store.get(TagId(x)))
    }
    /// Sets the child of `x` on side `S` (its parent link is not touched).
    #[inline]
    fn set_child<S: Side>(&mut self, x: u32, c: u32) {
        *S::child_mut(self.store.get_mut(TagId(x))) = c;
    }
    #[inline]
    pub(crate) fn parent(&self, x: u32) -> u32 {
        self.store.get(TagId(x)).parent
    }
    #[inline]
    pub(crate) fn is_red(&self, x: u32) -> bool {
        x != NIL && self.store.get(TagId(x)).tree & RED != 0
    }
    #[inline]
    fn set_red(&mut self, x: u32, red: bool) {
        if x != NIL {
            let t = self.store.get_mut(TagId(x));
            t.tree = if red { t.tree | RED } else { t.tree & !RED };
        }
    }
    /// The largest key in the subtree of `x` (0 for none).
    #[inline]
    fn maxkey(&self, x: u32) -> u8 {
        if x == NIL {
            0
        } else {
            self.store.get(TagId(x)).maxkey
        }
    }
    /// Recomputes `maxkey` of `x` from its key and its children's; true
    /// when it changed.
    #[inline]
    fn pull_maxkey(&mut self, x: u32) -> bool {
        let t = self.store.get(TagId(x));
        let (l, r, old) = (t.left, t.right, t.maxkey);
        let m = t.key().max(self.maxkey(l)).max(self.maxkey(r));
        self.store.get_mut(TagId(x)).maxkey = m;
        m != old
    }
    /// Recomputes `maxkey` from `x` up to the root, stopping where a value
    /// does not change.
    fn pull_maxkey_up(&mut self, mut x: u32) {
        while x != NIL && self.pull_maxkey(x) {
            x = self.parent(x);
        }
    }

    /// Makes the trees see a change of `id`'s [key](Tag::key) (its kind or
    /// its `list`) made through [`get_mut`](Self::get_mut): O(log n) at
    /// most, O(1) when the subtree maxima above do not change. A tag in no
    /// tree needs no call. [`set_kind`](Self::set_kind) calls it itself.
    #[inline]
    pub fn refresh_key(&mut self, id: TagId) {
        if self.store.get(id).in_tree() {
            self.refresh_from(id.0);
        }
    }

    /// Recomputes `maxkey` of `x`, then carries the change up: a parent
    /// whose maximum another member gives (it is above the old value on a
    /// decrease, or at least the new one on an increase) stops the walk
    /// with one lookup; only a parent whose maximum was the old value is
    /// recomputed from its children.
    pub(crate) fn refresh_from(&mut self, mut x: u32) {
        let t = self.store.get(TagId(x));
        let (l, r, mut p, mut old) = (t.left, t.right, t.parent, t.maxkey);
        let mut new = t.key().max(self.maxkey(l)).max(self.maxkey(r));
        if new == old {
            return;
        }
        self.store.get_mut(TagId(x)).maxkey = new;
        while p != NIL {
            x = p;
            let t = self.store.get(TagId(x));
            let (pm, up) = (t.maxkey, t.parent);
            if new > old {
                if pm >= new {
                    return;
                }
            } else {
                if pm > old {
                    return;
                }
                let (l, r) = (t.left, t.right);
                new = t.key().max(self.maxkey(l)).max(self.maxkey(r));
                if new == pm {
                    return;
                }
            }
            self.store.get_mut(TagId(x)).maxkey = new;
            old = pm;
            p = up;
        }
    }

    #[inline]
    fn set_parent(&mut self, x: u32, p: u32) {
        if x != NIL {
            self.store.get_mut(TagId(x)).parent = p;
        }
    }

    /// Strict order of two tags: `(start, rank)`.
    #[inline]
    pub(crate) fn less(&self, a: u32, b: u32) -> bool {
        let (ta, tb) = (self.store.get(TagId(a)), self.store.get(TagId(b)));
        (ta.start, rank(ta.kind)) < (tb.start, rank(tb.kind))
    }

    /// The tree `x` is in (as an index into `roots`).
    #[inline]
    fn tree_index(&self, x: u32) -> usize {
        let t = self.store.get(TagId(x)).tree & !RED;
        debug_assert!(t != NO_TREE, "kmem-btag: tag is in no tree");
        t as usize
    }

    /// The tree `id` is in, if any.
    pub fn tree_of(&self, id: TagId) -> Option<Tree> {
        match self.store.get(id).tree & !RED {
            0 => Some(Tree::Segments),
            1 => Some(Tree::Spans),
            _ => None,
        }
    }

    /// Tags in `tree`.
    #[inline]
    pub fn tree_len(&self, tree: Tree) -> usize {
        self.in_tree[tree as usize]
    }

    /// Replaces `x` in its parent's child slot (or the root) by `y`.
    fn replace_child(&mut self, x: u32, y: u32) {
        let p = self.parent(x);
        if p == NIL {
            let t = self.tree_index(x);
            self.roots[t] = y;
        } else if self.left(p) == x {
            self.store.get_mut(TagId(p)).left = y;
        } else {
            self.store.get_mut(TagId(p)).right = y;
        }
        self.set_parent(y, p);
    }

    /// Rotates toward side `S`: the child `y` of `x` on the other side
    /// takes the place of `x`, and `x` becomes the child of `y` on side `S`
    /// (`rotate::<Left>` is the usual left rotation).
    fn rotate<S: Side>(&mut self, x: u32) {
        let y = self.child::<S::Other>(x);
        let inner = self.child::<S>(y);
        self.set_child::<S::Other>(x, inner);
        self.set_parent(inner, x);
        self.replace_child(x, y);
        self.set_child::<S>(y, x);
        self.set_parent(x, y);
        self.rotated(x, y);
    }

    /// After a rotation that made `y` the parent of `x`: `y` now spans
    /// what `x` spanned, and `x` is recomputed from its new children.
    #[inline]
    fn rotated(&mut self, x: u32, y: u32) {
        let m = self.store.get(TagId(x)).maxkey;
        self.store.get_mut(TagId(y)).maxkey = m;
        self.pull_maxkey(x);
    }

    /// Inserts `id` into `tree`. O(log n).
    ///
    /// # Panics
    /// Panics if a tag with the same start and rank is already in the tree:
    /// the caller let two segments (or two spans) share a start.
    pub fn insert(&mut self, tree: Tree, id: TagId) {
        let key = {
            let t = self.store.get(id);
            (t.start, rank(t.kind))
        };
        let (mut parent, mut cur) = (NIL, self.roots[tree as usize]);
        let mut go_left = false;
        while cur != NIL {
            parent = cur;
            let t = self.store.get(TagId(cur));
            let here = (t.start, rank(t.kind));
            if key < here {
                go_left = true;
                cur = t.left;
            } else if here < key {
                go_left = false;
                cur = t.right;
            } else {
                panic!("kmem-btag: a tag with this start and kind is already in the tree");
            }
        }
        self.link(id.0, parent, go_left, tree as usize);
    }

    /// Inserts `new` right after `at` in `at`'s tree without searching:
    /// O(1) amortized plus rebalancing. The caller guarantees that `new`
    /// sorts after `at` and before `at`'s current successor (as when a
    /// segment is split and the tail gets a tag of its own).
    #[inline]
    pub fn insert_after(&mut self, at: TagId, new: TagId) {
        debug_assert!(self.less(at.0, new.0));
        debug_assert!(self.next(at).is_none_or(|n| self.less(new.0, n.0)));
        self.insert_beside::<Right>(at, new);
    }

    /// Inserts `new` right before `at` in address order without searching;
    /// the mirror of [`insert_after`](Self::insert_after).
    #[inline]
    pub fn insert_before(&mut self, at: TagId, new: TagId) {
        debug_assert!(self.less(new.0, at.0));
        debug_assert!(self.prev(at).is_none_or(|p| self.less(p.0, new.0)));
        self.insert_beside::<Left>(at, new);
    }

    /// Inserts `new` as the neighbour of `at` on side `S` in address order:
    /// the body of [`insert_after`](Self::insert_after) (`Right`) and
    /// [`insert_before`](Self::insert_before) (`Left`).
    #[inline]
    fn insert_beside<S: Side>(&mut self, at: TagId, new: TagId) {
        let t = self.tree_index(at.0);
        let c = self.child::<S>(at.0);
        if c == NIL {
            self.link(new.0, at.0, S::LEFT, t);
        } else {
            let m = self.extreme::<S::Other>(c);
            self.link(new.0, m, !S::LEFT, t);
        }
    }

    /// Hangs `z` as a red leaf under `parent` (the root of tree `tree` when
    /// NIL) and rebalances.
    fn link(&mut self, z: u32, parent: u32, go_left: bool, tree: usize) {
        {
            let t = self.store.get_mut(TagId(z));
            debug_assert_eq!(t.tree, NO_TREE, "kmem-btag: tag already in a tree");
            t.tree = tree as u8 | RED;
            t.parent = parent;
            t.left = NIL;
            t.right = NIL;
            t.maxkey = t.key();
        }
        if parent == NIL {
            self.roots[tree] = z;
        } else if go_left {
            self.store.get_mut(TagId(parent)).left = z;
        } else {
            self.store.get_mut(TagId(parent)).right = z;
        }
        self.in_tree[tree] += 1;
        self.pull_maxkey_up(parent);
        self.insert_fixup(z, tree);
    }

    fn insert_fixup(&mut self, mut z: u32, tree: usize) {
        while self.is_red(self.parent(z)) {
            let p = self.parent(z);
            let g = self.parent(p);
            z = if p == self.left(g) {
                self.insert_fixup_step::<Left>(z, p, g)
            } else {
                self.insert_fixup_step::<Right>(z, p, g)
            };
        }
        let root = self.roots[tree];
        self.set_red(root, false);
    }

    /// One step of [`insert_fixup`](Self::insert_fixup) for a red `z`
    /// whose red parent `p` is the child of `g` on side `S`; returns the
    /// member to look at next.
    #[inline]
    fn insert_fixup_step<S: Side>(&mut self, mut z: u32, p: u32, g: u32) -> u32 {
        let u = self.child::<S::Other>(g);
        if self.is_red(u) {
            self.set_red(p, false);
            self.set_red(u, false);
            self.set_red(g, true);
            return g;
        }
        if z == self.child::<S::Other>(p) {
            z = p;
            self.rotate::<S>(z);
        }
        let p = self.parent(z);
        let g = self.parent(p);
        self.set_red(p, false);
        self.set_red(g, true);
        self.rotate::<S::Other>(g);
        z
    }

    /// The last member of the subtree `x` on side `S`: its lowest for
    /// `Left`, its highest for `Right`.
    fn extreme<S: Side>(&self, mut x: u32) -> u32 {
        loop {
            let c = self.child::<S>(x);
            if c == NIL {
                return x;
            }
            x = c;
        }
    }

    /// Removes `id` from its tree. The tag keeps its range and kind.
    pub fn remove(&mut self, id: TagId) {
        let z = id.0;
        let tree = self.tree_index(z);
        let (zl, zr) = (self.left(z), self.right(z));
        let mut removed_red = self.is_red(z);
        // Where the spliced structure ends: every subtree from `xp` up to
        // it changed (a successor moved out of them); above it, each only
        // lost `id`, so a recomputation that changes nothing ends the walk.
        let mut moved = NIL;
        let (x, xp);
        if zl == NIL {
            x = zr;
            xp = self.parent(z);
            self.replace_child(z, zr);
        } else if zr == NIL {
            x = zl;
            xp = self.parent(z);
            self.replace_child(z, zl);
        } else {
            let y = self.extreme::<Left>(zr);
            moved = y;
            removed_red = self.is_red(y);
            x = self.right(y);
            if self.parent(y) == z {
                xp = y;
            } else {
                xp = self.parent(y);
                self.replace_child(y, x);
                self.store.get_mut(TagId(y)).right = zr;
                self.set_parent(zr, y);
            }
            self.replace_child(z, y);
            self.store.get_mut(TagId(y)).left = zl;
            self.set_parent(zl, y);
            let z_red = self.is_red(z);
            self.set_red(y, z_red);
        }
        {
            let t = self.store.get_mut(id);
            t.parent = NIL;
            t.left = NIL;
            t.right = NIL;
            t.tree = NO_TREE;
            t.maxkey = 0;
        }
        self.in_tree[tree] -= 1;
        // Every subtree from `xp` up lost `id` (and, when `id` had two
        // children, the successor `moved` up into its place on that path):
        // recompute them, up to `moved` whatever they give, then until one
        // does not change; the rotations keep them exact from there.
        let mut p = xp;
        if moved != NIL {
            loop {
                self.pull_maxkey(p);
                if p == moved {
                    break;
                }
                p = self.parent(p);
            }
            p = self.parent(p);
        }
        self.pull_maxkey_up(p);
        if !removed_red {
            self.remove_fixup(x, xp, tree);
        }
    }

    fn remove_fixup(&mut self, mut x: u32, mut xp: u32, tree: usize) {
        while x != self.roots[tree] && !self.is_red(x) {
            (x, xp) = if x == self.left(xp) {
                self.remove_fixup_step::<Left>(xp, tree)
            } else {
                self.remove_fixup_step::<Right>(xp, tree)
            };
        }
        self.set_red(x, false);
    }

    /// One step of [`remove_fixup`](Self::remove_fixup) for a doubly black
    /// member that is the child of `xp` on side `S`; returns the next
    /// member and its parent.
    #[inline]
    fn remove_fixup_step<S: Side>(&mut self, xp: u32, tree: usize) -> (u32, u32) {
        let mut w = self.child::<S::Other>(xp);
        if self.is_red(w) {
            self.set_red(w, false);
            self.set_red(xp, true);
            self.rotate::<S>(xp);
            w = self.child::<S::Other>(xp);
        }
        if !self.is_red(self.left(w)) && !self.is_red(self.right(w)) {
            self.set_red(w, true);
            return (xp, self.parent(xp));
        }
        if !self.is_red(self.child::<S::Other>(w)) {
            let inner = self.child::<S>(w);
            self.set_red(inner, false);
            self.set_red(w, true);
            self.rotate::<S::Other>(w);
            w = self.child::<S::Other>(xp);
        }
        let xp_red = self.is_red(xp);
        self.set_red(w, xp_red);
        self.set_red(xp, false);
        let outer = self.child::<S::Other>(w);
        self.set_red(outer, false);
        self.rotate::<S>(xp);
        (self.roots[tree], NIL)
    }

    /// The lowest tag of `tree`.
    pub fn first(&self, tree: Tree) -> Option<TagId> {
        let root = self.roots[tree as usize];
        (root != NIL).then(|| TagId(self.extreme::<Left>(root)))
    }

    /// The highest tag of `tree`.
    pub fn last(&self, tree: Tree) -> Option<TagId> {
        let root = self.roots[tree as usize];
        (root != NIL).then(|| TagId(self.extreme::<Right>(root)))
    }

    /// The tag after `id` in its tree. O(1) amortized.
    #[inline]
    pub fn next(&self, id: TagId) -> Option<TagId> {
        self.step::<Right>(id)
    }

    /// The tag before `id` in its tree. O(1) amortized.
    #[inline]
    pub fn prev(&self, id: TagId) -> Option<TagId> {
        self.step::<Left>(id)
    }

    /// The neighbour of `id` on side `S` in address order: the body of
    /// [`next`](Self::next) (`Right`) and [`prev`](Self::prev) (`Left`).
    #[inline]
    fn step<S: Side>(&self, id: TagId) -> Option<TagId> {
        let t = self.store.get(id);
        let c = S::child(t);
        if c != NIL {
            return Some(TagId(self.extreme::<S::Other>(c)));
        }
        let (mut x, mut y) = (id.0, t.parent);
        while y != NIL {
            let ty = self.store.get(TagId(y));
            if S::child(ty) != x {
                break;
            }
            x = y;
            y = ty.parent;
        }
        TagId::from_raw(y)
    }

    /// The first tag of `tree` whose start is at or above `addr` (a span
    /// before a segment that shares its start). O(log n).
    #[inline]
    pub fn lower_bound(&self, tree: Tree, addr: usize) -> Option<TagId> {
        self.bound::<Left>(tree, addr)
    }

    /// The last tag of `tree` whose start is at or below `addr` (a segment
    /// rather than a span when both start there). O(log n).
    #[inline]
    pub fn floor(&self, tree: Tree, addr: usize) -> Option<TagId> {
        self.bound::<Right>(tree, addr)
    }

    /// The last tag of `tree` on side `S` among those whose start is at
    /// `addr` or beyond it on the other side: the body of
    /// [`lower_bound`](Self::lower_bound) (`Left`) and
    /// [`floor`](Self::floor) (`Right`).
    #[inline]
    fn bound<S: Side>(&self, tree: Tree, addr: usize) -> Option<TagId> {
        let (mut x, mut found) = (self.roots[tree as usize], NIL);
        while x != NIL {
            let t = self.store.get(TagId(x));
            let hit = if S::LEFT {
                t.start >= addr
            } else {
                t.start <= addr
            };
            if hit {
                found = x;
                x = S::child(t);
            } else {
                x = <S::Other as Side>::child(t);
            }
        }
        TagId::from_raw(found)
    }

    /// The lowest member of `tree` starting at or above `from` whose
    /// [key](Tag::key) is at least `k`. O(log n): one walk up from the
    /// first member at or above `from`, one down a subtree that holds such
    /// a member.
    pub fn first_keyed_from(&self, tree: Tree, from: usize, k: u8) -> Option<TagId> {
        let x = self.lower_bound(tree, from)?;
        if self.store.get(x).key() >= k {
            return Some(x);
        }
        self.next_keyed(x, k)
    }

    /// The member after `id` in its tree whose [key](Tag::key) is at least
    /// `k`: O(log n), and O(1) amortized over a walk through a tree's
    /// members in order (each step climbs only as far as the next one).
    pub fn next_keyed(&self, id: TagId, k: u8) -> Option<TagId> {
        self.step_keyed::<Right>(id, k)
    }

    /// The highest member of `tree` starting below `below` whose
    /// [key](Tag::key) is at least `k`: the mirror of
    /// [`first_keyed_from`](Self::first_keyed_from). O(log n).
    pub fn last_keyed_below(&self, tree: Tree, below: usize, k: u8) -> Option<TagId> {
        let x = self.floor(tree, below.checked_sub(1)?)?;
        if self.store.get(x).key() >= k {
            return Some(x);
        }
        self.prev_keyed(x, k)
    }

    /// The member before `id` in its tree whose [key](Tag::key) is at least
    /// `k`: the mirror of [`next_keyed`](Self::next_keyed).
    pub fn prev_keyed(&self, id: TagId, k: u8) -> Option<TagId> {
        self.step_keyed::<Left>(id, k)
    }

    /// The nearest member on side `S` of `id` whose key is at least `k`:
    /// the body of [`next_keyed`](Self::next_keyed) (`Right`) and
    /// [`prev_keyed`](Self::prev_keyed) (`Left`).
    #[inline]
    fn step_keyed<S: Side>(&self, id: TagId, k: u8) -> Option<TagId> {
        // Each node's tag is read once (a lookup per node, not per link).
        let (mut x, mut t) = (id.0, self.store.get(id));
        if self.holds_key(S::child(t), k) {
            return Some(TagId(self.extreme_keyed::<S::Other>(S::child(t), k)));
        }
        // Up: each ancestor reached from its other side lies on side `S` of
        // `x` in order, and so does its subtree on side `S`.
        loop {
            let p = t.parent;
            if p == NIL {
                return None;
            }
            t = self.store.get(TagId(p));
            if <S::Other as Side>::child(t) == x {
                if t.key() >= k {
                    return Some(TagId(p));
                }
                if self.holds_key(S::child(t), k) {
                    return Some(TagId(self.extreme_keyed::<S::Other>(S::child(t), k)));
                }
            }
            x = p;
        }
    }

    /// True when `x` is a member whose subtree holds a key of at least `k`.
    #[inline]
    fn holds_key(&self, x: u32, k: u8) -> bool {
        x != NIL && self.store.get(TagId(x)).maxkey >= k
    }

    /// The last member on side `S` of the subtree `x` (whose `maxkey` is at
    /// least `k`) with a key of at least `k`: its lowest such for `Left`,
    /// its highest for `Right`.
    fn extreme_keyed<S: Side>(&self, mut x: u32, k: u8) -> u32 {
        loop {
            let t: &Tag = self.store.get(TagId(x));
            if self.holds_key(S::child(t), k) {
                x = S::child(t);
            } else if t.key() >= k {
                return x;
            } else {
                let other = <S::Other as Side>::child(t);
                debug_assert!(self.holds_key(other, k), "kmem-btag: stale maxkey");
                x = other;
            }
        }
    }

    /// The tags of `tree` in address order.
    pub fn iter(&self, tree: Tree) -> impl Iterator<Item = TagId> + '_ {
        let mut cur = self.first(tree);
        core::iter::from_fn(move || {
            let id = cur?;
            cur = self.next(id);
            Some(id)
        })
    }
}
