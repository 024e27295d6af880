//! Tensor expressions in einsum form: sums of `coefficient × Π factors[indices]`.
//!
//! This is the representation every derivation runs on (DESIGN.md §1.5). A [`Term`] is
//! a product of [`Atom`]s, each a factor ([`Kind`]) with index slots. Indices below the
//! expression's number of free indices are its output slots (one for a drift, two for a
//! diffusion); the others are bound and summed (einsum semantics: an index may sit in
//! any number of factors, so elementwise products are shared free indices).
//!
//! [`canonical`] puts a term in canonical form: Kronecker deltas contracted away, slots
//! sorted inside each symmetric group, factors ordered and bound indices renamed so that
//! the encoding is the smallest over all relabelings. Equal terms become equal values,
//! so a [`TExpr`] (a map from terms to [`Poly`] coefficients) collects like terms and
//! drops those that cancel.

use crate::algebra::poly::{Poly, Sym};
use std::collections::BTreeMap;

/// An index label: `< free` is an output slot, `>= free` is summed.
pub type Label = u8;

/// What a factor is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// `∇^k f` at the current parameter; `k` symmetric slots (`k = 0` is `f`).
    DF(u8),
    /// `∂^d M_r`: the `r`-th moment tensor of the gradient noise (`r = 2` is Σ),
    /// differentiated `d` times in the parameter; slots: `r` symmetric, then `d` symmetric.
    Moment { r: u8, d: u8 },
    /// A component of state variable number `v` (the parameter is 0): one slot, or none
    /// for a scalar state.
    State(u8),
    /// The all-ones vector (a scalar broadcast to a vector), one slot.
    One,
    /// A noise sample of the step at point number `point` (0: the current parameter);
    /// only during the expansion of the discrete step, before the expectation.
    Noise { sample: u8, point: u8 },
    /// The displacement `y − z` of state variable `v`, for the SDE's one-step moments.
    Disp(u8),
    /// Kronecker δ, two symmetric slots; contracted away unless both slots are free.
    Delta,
    /// An elementwise function of the state ([`crate::algebra::elem`]), by number: one slot (the
    /// component index it is applied at) or none (a function of the scalar states).
    Elem(u32),
    /// A kink (`sign` or `|·|`) of an argument with noise of order one in it, by number
    /// in the derivation's table; one slot. Only during the expansion of the discrete
    /// step, before the expectation turns it into Gaussian averages.
    Kink(u16),
    /// The mean of two kinks of one noise sample at two indices
    /// ([`crate::algebra::elem::Pair`], by number): two slots, in order (not symmetric).
    Pair(u32),
}

impl Kind {
    fn code(self) -> [u16; 3] {
        match self {
            Kind::DF(k) => [0, k as u16, 0],
            Kind::Moment { r, d } => [1, r as u16, d as u16],
            Kind::State(v) => [2, v as u16, 0],
            Kind::One => [3, 0, 0],
            Kind::Noise { sample, point } => [4, sample as u16, point as u16],
            Kind::Disp(v) => [5, v as u16, 0],
            Kind::Delta => [6, 0, 0],
            Kind::Elem(id) => [7, (id >> 16) as u16, id as u16],
            Kind::Kink(id) => [8, id, 0],
            Kind::Pair(id) => [9, (id >> 16) as u16, id as u16],
        }
    }
}

/// The index slots of a factor: inline up to 16 (no allocation; the same size as a
/// `Vec`), ordered and hashed as a slice.
pub type Slots = smallvec::SmallVec<[Label; 16]>;

/// A factor with its index slots.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Atom {
    pub kind: Kind,
    pub idx: Slots,
}

impl Atom {
    pub fn new(kind: Kind, idx: impl Into<Slots>) -> Atom {
        Atom {
            kind,
            idx: idx.into(),
        }
    }

    /// Where the slots' second symmetric group starts: a moment tensor's `r` moment
    /// slots come before its derivative slots; every other factor has one group.
    pub fn split(&self) -> usize {
        match self.kind {
            Kind::Moment { r, .. } => r as usize,
            Kind::Pair(_) => 1,
            _ => self.idx.len(),
        }
    }

    /// A factor from its slots as a slice (copied inline).
    pub fn with(kind: Kind, idx: &[Label]) -> Atom {
        Atom {
            kind,
            idx: Slots::from_slice(idx),
        }
    }
}

/// A product of atoms in canonical form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Term {
    pub atoms: Vec<Atom>,
}

/// A sum of terms with `free` output indices.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TExpr {
    pub free: u8,
    pub terms: BTreeMap<Term, Poly>,
}

/// The largest number of relabelings the canonical search explores for one term.
const SEARCH_LIMIT: usize = 20_000;

/// Raw product (with its number of free indices) → canonical term and powers of `d`.
type Memo = rustc_hash::FxHashMap<(u8, Vec<Atom>), Canon>;

/// A canonical term, the power of the dimension its contraction produced, and a
/// constant factor that merging elementwise functions left over (`None`: 1, without
/// forming it; zero: the product vanishes).
pub type Canon = (Term, u32, Option<Poly>);

thread_local! {
    /// Canonical forms already computed: the same raw products recur across the orders
    /// and moments of a derivation. A pure function's memo, so results do not depend on it.
    static CANONICAL: std::cell::RefCell<Memo> = std::cell::RefCell::new(Memo::default());
}

/// Entries kept in the memo before it is cleared.
const MEMO_LIMIT: usize = 1 << 18;

/// Puts a raw product in canonical form. Returns the term and how many factors of the
/// dimension `d` the contraction produced (`δ_aa = d`).
pub fn canonical(mut atoms: Vec<Atom>, free: u8) -> Canon {
    // The memos hold ids of the elementwise functions' table: valid for one table only.
    let generation = crate::algebra::elem::generation();
    if MEMO_GENERATION.with(|g| g.replace(generation)) != generation {
        clear_memo();
    }
    // Factors sorted by kind and bound labels renamed in order of first appearance: raw
    // products that differ only in factor order or in the numbers of their summed indices
    // mostly share one memo entry (the result does not depend on either).
    atoms.sort_by_key(|a| a.kind.code());
    relabel_in_order(&mut atoms, free);
    let key = (free, atoms);
    if let Some(hit) = CANONICAL.with(|m| m.borrow().get(&key).cloned()) {
        return hit;
    }
    let result = canonical_uncached(key.1.clone(), free);
    CANONICAL.with(|m| {
        let mut m = m.borrow_mut();
        if m.len() >= MEMO_LIMIT {
            m.clear();
        }
        m.insert(key, result.clone());
    });
    result
}

/// Renames the bound labels in order of first appearance.
fn relabel_in_order(atoms: &mut [Atom], free: u8) {
    let mut map = [u8::MAX; 256];
    let mut next = free;
    for a in atoms {
        for l in &mut a.idx {
            if *l >= free {
                if map[*l as usize] == u8::MAX {
                    map[*l as usize] = next;
                    next += 1;
                }
                *l = map[*l as usize];
            }
        }
    }
}

thread_local! {
    /// The [`crate::algebra::elem::generation`] the memos were filled under.
    static MEMO_GENERATION: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Empties this thread's memo of canonical forms (benchmarks use it to measure cold runs).
pub fn clear_memo() {
    CANONICAL.with(|m| m.borrow_mut().clear());
    MERGED.with(|m| m.borrow_mut().clear());
}

fn canonical_uncached(mut atoms: Vec<Atom>, free: u8) -> Canon {
    let mut dim_power = 0u32;
    // Contract Kronecker deltas that touch a bound index.
    while let Some(pos) = atoms
        .iter()
        .position(|a| a.kind == Kind::Delta && (a.idx[0] >= free || a.idx[1] >= free))
    {
        let d = atoms.swap_remove(pos);
        let (i, j) = (d.idx[0], d.idx[1]);
        if i == j {
            dim_power += 1;
            continue;
        }
        // Replace the bound one by the other.
        let (from, to) = if j >= free { (j, i) } else { (i, j) };
        for a in &mut atoms {
            for l in &mut a.idx {
                if *l == from {
                    *l = to;
                }
            }
        }
    }
    // One elementwise factor per index (and one for the scalar states).
    let mut factor = match merge_elementwise(&mut atoms) {
        Some(f) => f,
        None => return (Term::default(), 0, Some(Poly::zero())),
    };
    // An elementwise function at an index no other factor reads is summed over it: a
    // scalar function, merged with the others (m_i ‖m‖⁻³ Σ_a m_a² is m_i ‖m‖⁻¹).
    if sum_lone_functions(&mut atoms, free) {
        match merge_elementwise(&mut atoms) {
            Some(Some(c)) => factor = Some(factor.map_or(c.clone(), |f| f.mul(&c))),
            Some(None) => {}
            None => return (Term::default(), 0, Some(Poly::zero())),
        }
    }
    // The ones vector disappears where its index meets another factor's elementwise.
    while let Some(pos) = atoms.iter().enumerate().position(|(k, a)| {
        a.kind == Kind::One && {
            let l = a.idx[0];
            let others: usize = atoms
                .iter()
                .enumerate()
                .filter(|(m, _)| *m != k)
                .map(|(_, b)| b.idx.iter().filter(|x| **x == l).count())
                .sum();
            if l < free {
                others >= 1
            } else {
                others >= 2
            }
        }
    }) {
        atoms.swap_remove(pos);
    }
    (search(atoms, free), dim_power, factor)
}

/// Replaces each elementwise function at a bound index that no other factor reads by
/// its sum over that index (a function of no index); whether any was.
fn sum_lone_functions(atoms: &mut [Atom], free: u8) -> bool {
    use crate::algebra::elem::{self, FExpr};
    let mut any = false;
    for k in 0..atoms.len() {
        let (Kind::Elem(id), [l]) = (atoms[k].kind, &atoms[k].idx[..]) else {
            continue;
        };
        let l = *l;
        // The index test first: it is cheap, and almost every factor fails it.
        let lone = l >= free
            && atoms
                .iter()
                .enumerate()
                .all(|(m, b)| m == k || !b.idx.contains(&l));
        if !lone {
            continue;
        }
        let f = elem::get(id);
        if f.contractions().is_empty() {
            let sum = FExpr::Contract(Box::new(f));
            atoms[k] = Atom::new(Kind::Elem(elem::intern(sum)), Slots::new());
            any = true;
        }
    }
    any
}

/// Merges the state components and elementwise functions that share an index into a
/// single factor (a bare state component stays a [`Kind::State`]). Returns the constant
/// factor left when a merged function is constant (`Some(None)`: 1), or `None` when the
/// product vanishes.
fn merge_elementwise(atoms: &mut Vec<Atom>) -> Option<Option<Poly>> {
    let is_elementwise =
        |a: &Atom| matches!(a.kind, Kind::State(_) | Kind::Elem(_)) && a.idx.len() <= 1;
    if atoms.iter().filter(|a| is_elementwise(a)).count() < 2
        && !atoms.iter().any(|a| matches!(a.kind, Kind::Elem(_)))
    {
        return Some(None);
    }
    let mut keys: Vec<Option<Label>> = Vec::new();
    for a in atoms.iter().filter(|a| is_elementwise(a)) {
        let k = a.idx.first().copied();
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    let mut factor: Option<Poly> = None;
    for key in keys {
        let mut group: Vec<Kind> = Vec::new();
        atoms.retain(|a| {
            let member = is_elementwise(a) && a.idx.first().copied() == key;
            if member {
                group.push(a.kind);
            }
            !member
        });
        if let [Kind::State(v)] = group[..] {
            atoms.push(Atom::new(
                Kind::State(v),
                key.into_iter().collect::<Slots>(),
            ));
            continue;
        }
        group.sort_unstable();
        let (c, merged) = MERGED
            .with(|m| m.borrow().get(&group).cloned())
            .unwrap_or_else(|| {
                let merged = merge_group(&group);
                MERGED.with(|m| m.borrow_mut().insert(group, merged.clone()));
                merged
            });
        if let Some(c) = c {
            if c.is_zero() {
                return None;
            }
            factor = Some(match factor {
                Some(f) => f.mul(&c),
                None => c,
            });
        }
        let idx: Slots = key.into_iter().collect();
        match merged {
            // A constant at a free index is a constant vector: keep the index alive.
            Merged::Const => atoms.extend(key.map(|l| Atom::with(Kind::One, &[l]))),
            Merged::Factor(kind) => atoms.push(Atom::new(kind, idx)),
        }
    }
    Some(factor)
}

/// What a group of elementwise factors at one index merges into, beside a constant.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Merged {
    /// Nothing but the constant.
    Const,
    /// One factor: a state component or an elementwise function.
    Factor(Kind),
}

/// Sorted kinds of a group → its constant (`None`: 1) and what it merges into.
type MergedMemo = rustc_hash::FxHashMap<Vec<Kind>, (Option<Poly>, Merged)>;

thread_local! {
    /// Groups of elementwise factors already merged (sorted kinds → constant and
    /// factor). The functions are the thread's [`crate::algebra::elem`] table's, so the memo is
    /// cleared with the table ([`clear_memo`]).
    static MERGED: std::cell::RefCell<MergedMemo> = std::cell::RefCell::new(MergedMemo::default());
}

/// The product of a group of elementwise factors, simplified: a constant (`None`: 1;
/// zero when the product vanishes identically) and what is left.
fn merge_group(group: &[Kind]) -> (Option<Poly>, Merged) {
    use crate::algebra::elem::{self, FExpr};
    let product = FExpr::Prod(
        group
            .iter()
            .map(|k| match *k {
                Kind::State(v) => FExpr::Var(v),
                Kind::Elem(id) => elem::get(id),
                _ => unreachable!("only elementwise atoms are grouped"),
            })
            .collect(),
    )
    .simplify();
    // A constant factor of the function belongs to the coefficient.
    let (c, product) = match product {
        FExpr::Prod(mut items) if matches!(items.first(), Some(FExpr::Const(_))) => {
            let FExpr::Const(c) = items.remove(0) else {
                unreachable!("matched above")
            };
            (c, FExpr::Prod(items).simplify())
        }
        other => (Poly::one(), other),
    };
    let one = |c: Poly| if c.is_one() { None } else { Some(c) };
    match product {
        FExpr::Const(k) => (one(c.mul(&k)), Merged::Const),
        FExpr::Var(v) => (one(c), Merged::Factor(Kind::State(v))),
        f => {
            let id = elem::intern(f);
            if elem::is_zero(id) {
                (Some(Poly::zero()), Merged::Const)
            } else {
                (one(c), Merged::Factor(Kind::Elem(id)))
            }
        }
    }
}

/// The smallest encoding over orderings of the atoms and labelings of bound indices.
///
/// An atom's encoding is its kind code (three numbers), its number of slots and its
/// relabeled slots, each symmetric group sorted; a term's is its atoms' in order. The
/// search is depth first over which atom comes next and how its unassigned bound labels
/// are numbered; only the candidates of the smallest encoding at each step are followed.
fn search(atoms: Vec<Atom>, free: u8) -> Term {
    if atoms.is_empty() {
        return Term::default();
    }
    let mut s = Search {
        atoms: &atoms,
        free,
        remaining: (0..atoms.len()).collect(),
        map: [u8::MAX; 256],
        next: free,
        assigned: Vec::new(),
        encoding: Vec::new(),
        order: Vec::new(),
        best: None,
        budget: SEARCH_LIMIT,
        scratch: Vec::new(),
    };
    s.dfs(0);
    let (encoding, order) = s.best.expect("at least one complete labeling");
    // The encoding holds every relabeled slot; the order says which atom (kind) each is.
    let mut out = Vec::with_capacity(order.len());
    let mut at = 0;
    for ai in order {
        let len = encoding[at + 3] as usize;
        let idx: Slots = encoding[at + 4..at + 4 + len]
            .iter()
            .map(|&l| l as Label)
            .collect();
        out.push(Atom::new(atoms[ai].kind, idx));
        at += 4 + len;
    }
    Term { atoms: out }
}

/// The smallest encoding of a step and its candidates: (position among the remaining
/// atoms, which of its placements).
type Candidates = (Vec<u16>, Vec<(usize, usize)>);

/// The state of the canonical labeling search. It is extended before each descent and
/// restored after it: the partial labeling is never copied, and placing an atom
/// allocates nothing once the buffers have grown.
struct Search<'a> {
    atoms: &'a [Atom],
    free: u8,
    /// Atoms not yet placed.
    remaining: Vec<usize>,
    /// Old bound label → new label (`u8::MAX`: unassigned).
    map: [u8; 256],
    /// The next new bound label.
    next: u8,
    /// The old labels assigned so far, in order (the undo log of `map`).
    assigned: Vec<Label>,
    /// The encoding of the atoms placed so far.
    encoding: Vec<u16>,
    /// Which atom was placed at each position.
    order: Vec<usize>,
    /// The smallest complete encoding found, and its order.
    best: Option<(Vec<u16>, Vec<usize>)>,
    /// Nodes left to explore ([`SEARCH_LIMIT`]).
    budget: usize,
    /// Per depth: the smallest candidate encoding and the candidates that give it.
    scratch: Vec<Candidates>,
}

impl Search<'_> {
    /// Places atom `ai` in its `k`-th way: appends its encoding and assigns its
    /// unassigned bound labels. The ways are the orders of each slot group's unassigned
    /// labels (numbered by their first appearance), all combinations; `false` (with
    /// nothing to undo but what [`Search::unplace`] undoes) when there is no `k`-th.
    fn place(&mut self, ai: usize, mut k: usize) -> bool {
        let a = &self.atoms[ai];
        let free = self.free;
        self.encoding.extend_from_slice(&a.kind.code());
        self.encoding.push(a.idx.len() as u16);
        let split = a.split();
        let groups = [0..split, split..a.idx.len()];
        for range in groups {
            let slots = &a.idx[range];
            let start = self.assigned.len();
            for &l in slots {
                if l >= free
                    && self.map[l as usize] == u8::MAX
                    && !self.assigned[start..].contains(&l)
                {
                    self.assigned.push(l);
                }
            }
            // The k-th order (in this group's digit) of the new labels: a Lehmer code.
            let fresh = &mut self.assigned[start..];
            let n = fresh.len();
            for i in 0..n {
                let digit = (k % factorial(n - i)) / factorial(n - 1 - i);
                fresh[i..=i + digit].rotate_right(1);
            }
            k /= factorial(n);
            for &l in &self.assigned[start..] {
                self.map[l as usize] = self.next;
                self.next += 1;
            }
            let at = self.encoding.len();
            self.encoding.extend(
                slots
                    .iter()
                    .map(|&l| if l < free { l } else { self.map[l as usize] } as u16),
            );
            self.encoding[at..].sort_unstable();
        }
        k == 0
    }

    /// Undoes placements back to the given lengths of the encoding and the undo log.
    fn unplace(&mut self, encoding: usize, assigned: usize) {
        self.encoding.truncate(encoding);
        for &l in &self.assigned[assigned..] {
            self.map[l as usize] = u8::MAX;
        }
        self.next -= (self.assigned.len() - assigned) as u8;
        self.assigned.truncate(assigned);
    }

    /// The unassigned bound labels of atom `ai` in the order its first placement
    /// numbers them.
    fn fresh(&self, ai: usize) -> Vec<Label> {
        let a = &self.atoms[ai];
        let mut out: Vec<Label> = Vec::new();
        let split = a.split();
        for group in [&a.idx[..split], &a.idx[split..]] {
            let start = out.len();
            for &l in group {
                if l >= self.free && self.map[l as usize] == u8::MAX && !out[start..].contains(&l) {
                    out.push(l);
                }
            }
        }
        out
    }

    /// Whether a permutation of the unassigned labels that takes atom `i`'s first
    /// placement to atom `j`'s maps the unplaced atoms onto themselves. Then the two
    /// placements' subtrees are images of each other and give the same encodings.
    fn symmetric(&self, i: usize, j: usize) -> bool {
        let (from, to) = (self.fresh(i), self.fresh(j));
        if from.len() != to.len() {
            return false;
        }
        // π(from[k]) = to[k], completed to a permutation: the labels of `to` that are not
        // in `from` go to those of `from` that are not in `to`.
        let mut pi: [Label; 256] = std::array::from_fn(|l| l as Label);
        for (&a, &b) in from.iter().zip(&to) {
            pi[a as usize] = b;
        }
        let back: Vec<Label> = from.iter().copied().filter(|l| !to.contains(l)).collect();
        let out: Vec<Label> = to.iter().copied().filter(|l| !from.contains(l)).collect();
        for (&a, &b) in out.iter().zip(&back) {
            pi[a as usize] = b;
        }
        let normal = |f: &dyn Fn(Label) -> Label| {
            let mut atoms: Vec<Atom> = self
                .remaining
                .iter()
                .map(|&ai| {
                    let a = &self.atoms[ai];
                    let mut idx: Slots = a.idx.iter().map(|&l| f(l)).collect();
                    let split = a.split();
                    idx[..split].sort_unstable();
                    idx[split..].sort_unstable();
                    Atom { kind: a.kind, idx }
                })
                .collect();
            atoms.sort_unstable();
            atoms
        };
        normal(&|l| l) == normal(&|l| pi[l as usize])
    }

    fn dfs(&mut self, depth: usize) {
        if self.remaining.is_empty() {
            if self.best.as_ref().is_none_or(|(b, _)| self.encoding < *b) {
                match &mut self.best {
                    Some((b, o)) => {
                        b.clone_from(&self.encoding);
                        o.clone_from(&self.order);
                    }
                    None => self.best = Some((self.encoding.clone(), self.order.clone())),
                }
            }
            return;
        }
        if self.budget == 0 && self.best.is_some() {
            return;
        }
        self.budget = self.budget.saturating_sub(1);
        if self.scratch.len() <= depth {
            self.scratch.push(Default::default());
        }
        let (mut smallest, mut cands) = std::mem::take(&mut self.scratch[depth]);
        smallest.clear();
        cands.clear();
        // Only atoms of the smallest kind code can give the smallest encoding (it starts
        // with the code, the same length for every kind): the others are not placed.
        let min_code = self
            .remaining
            .iter()
            .map(|&ai| self.atoms[ai].kind.code())
            .min()
            .expect("atoms remain");
        let (len0, assigned0) = (self.encoding.len(), self.assigned.len());
        for pos in 0..self.remaining.len() {
            let ai = self.remaining[pos];
            if self.atoms[ai].kind.code() != min_code {
                continue;
            }
            for k in 0.. {
                let placed = self.place(ai, k);
                if placed {
                    let enc = &self.encoding[len0..];
                    match enc.cmp(&smallest[..]) {
                        _ if cands.is_empty() => {
                            smallest.clear();
                            smallest.extend_from_slice(enc);
                            cands.push((pos, k));
                        }
                        std::cmp::Ordering::Less => {
                            smallest.clear();
                            smallest.extend_from_slice(enc);
                            cands.clear();
                            cands.push((pos, k));
                        }
                        std::cmp::Ordering::Equal => cands.push((pos, k)),
                        std::cmp::Ordering::Greater => {}
                    }
                }
                self.unplace(len0, assigned0);
                if !placed {
                    break;
                }
            }
        }
        // Prune against the best complete encoding found so far.
        let pruned = self.best.as_ref().is_some_and(|(b, _)| {
            let n = (len0 + smallest.len()).min(b.len());
            let prefix = self.encoding.iter().chain(smallest.iter()).take(n);
            prefix.cmp(b[..n].iter()) == std::cmp::Ordering::Greater
        });
        if !pruned {
            // Of candidates that a symmetry of the unplaced atoms maps onto each other,
            // one is followed: their subtrees give the same encodings.
            if cands.len() > 1 {
                let mut kept = 1;
                for c in 1..cands.len() {
                    let (pos, k) = cands[c];
                    let redundant = k == 0
                        && cands[..kept].iter().any(|&(p0, k0)| {
                            k0 == 0 && self.symmetric(self.remaining[p0], self.remaining[pos])
                        });
                    if !redundant {
                        cands[kept] = cands[c];
                        kept += 1;
                    }
                }
                cands.truncate(kept);
            }
            for &(pos, k) in &cands {
                let ai = self.remaining.remove(pos);
                self.place(ai, k);
                self.order.push(ai);
                self.dfs(depth + 1);
                self.order.pop();
                self.unplace(len0, assigned0);
                self.remaining.insert(pos, ai);
            }
        }
        self.scratch[depth] = (smallest, cands);
    }
}

fn factorial(n: usize) -> usize {
    (1..=n).product()
}

impl TExpr {
    pub fn zero(free: u8) -> TExpr {
        TExpr {
            free,
            terms: BTreeMap::new(),
        }
    }

    /// A single term from raw atoms (canonicalised); `dim` is the symbol for `d`.
    pub fn from_atoms(atoms: Vec<Atom>, free: u8, coef: Poly, dim: Sym) -> TExpr {
        let mut e = TExpr::zero(free);
        e.add_raw(atoms, coef, dim);
        e
    }

    /// A constant (no factors) with `free = 0`.
    pub fn scalar(coef: Poly) -> TExpr {
        let mut e = TExpr::zero(0);
        if !coef.is_zero() {
            e.terms.insert(Term::default(), coef);
        }
        e
    }

    pub fn is_zero(&self) -> bool {
        self.terms.is_empty()
    }

    pub fn len(&self) -> usize {
        self.terms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// Adds a raw product (canonicalising it).
    pub fn add_raw(&mut self, atoms: Vec<Atom>, coef: Poly, dim: Sym) {
        if coef.is_zero() {
            return;
        }
        let (term, dims, factor) = canonical(atoms, self.free);
        if factor.as_ref().is_some_and(Poly::is_zero) {
            return;
        }
        let coef = if dims > 0 {
            coef.shift(dim, dims as i32)
        } else {
            coef
        };
        let coef = match factor {
            Some(f) => coef.mul(&f),
            None => coef,
        };
        self.add_term(term, &coef);
    }

    pub fn add_term(&mut self, term: Term, coef: &Poly) {
        if coef.is_zero() {
            return;
        }
        match self.terms.get_mut(&term) {
            Some(c) => {
                c.add_assign(coef);
                if c.is_zero() {
                    self.terms.remove(&term);
                }
            }
            None => {
                self.terms.insert(term, coef.clone());
            }
        }
    }

    pub fn add_assign(&mut self, other: &TExpr) {
        debug_assert_eq!(self.free, other.free);
        for (t, c) in &other.terms {
            self.add_term(t.clone(), c);
        }
    }

    pub fn add(&self, other: &TExpr) -> TExpr {
        let mut e = self.clone();
        e.add_assign(other);
        e
    }

    pub fn sub(&self, other: &TExpr) -> TExpr {
        let mut e = self.clone();
        e.add_assign(&other.scale(&Poly::int(-1)));
        e
    }

    /// Multiplies every coefficient by `c`.
    pub fn scale(&self, c: &Poly) -> TExpr {
        let mut e = TExpr::zero(self.free);
        for (t, k) in &self.terms {
            e.add_term(t.clone(), &k.mul(c));
        }
        e
    }

    /// Applies `f` to every coefficient.
    pub fn map_coef(&self, f: impl Fn(&Poly) -> Poly) -> TExpr {
        let mut e = TExpr::zero(self.free);
        for (t, k) in &self.terms {
            e.add_term(t.clone(), &f(k));
        }
        e
    }

    /// Combines terms that differ only in their one elementwise function: for each power
    /// of `small`, `Σ_k c_k f_k` becomes a single function (and vanishes when it is
    /// identically zero, which [`crate::algebra::elem`] decides numerically). Distinct functions
    /// can be linearly dependent (`σ0 √u/P + ε0/P = 1` for `P = σ0 √u + ε0`); after this
    /// a combination that is zero is zero.
    pub fn collect_elementwise(&self, small: Sym, dim: Sym) -> TExpr {
        const SENTINEL: u32 = u32::MAX;
        let mut out = TExpr::zero(self.free);
        let mut groups: BTreeMap<Term, Vec<(u32, Poly)>> = BTreeMap::new();
        for (t, c) in &self.terms {
            let elems: Vec<usize> = t
                .atoms
                .iter()
                .enumerate()
                .filter(|(_, a)| matches!(a.kind, Kind::Elem(_)))
                .map(|(i, _)| i)
                .collect();
            if let [i] = elems[..] {
                let Kind::Elem(id) = t.atoms[i].kind else {
                    unreachable!()
                };
                let mut skeleton = t.clone();
                skeleton.atoms[i].kind = Kind::Elem(SENTINEL);
                groups.entry(skeleton).or_default().push((id, c.clone()));
            } else {
                out.add_term(t.clone(), c);
            }
        }
        for (skeleton, members) in groups {
            let pos = skeleton
                .atoms
                .iter()
                .position(|a| a.kind == Kind::Elem(SENTINEL))
                .expect("the skeleton keeps its slot");
            if let [(id, c)] = &members[..] {
                let mut t = skeleton.clone();
                t.atoms[pos].kind = Kind::Elem(*id);
                out.add_term(t, c);
                continue;
            }
            let mut powers: Vec<i32> = members
                .iter()
                .flat_map(|(_, c)| c.terms().map(|(m, _)| Poly::exponent(m, small)))
                .collect();
            powers.sort_unstable();
            powers.dedup();
            for p in powers {
                let parts: Vec<(Poly, crate::algebra::elem::FExpr)> = members
                    .iter()
                    .map(|(id, c)| (c.coeff(small, p), crate::algebra::elem::get(*id)))
                    .filter(|(c, _)| !c.is_zero())
                    .collect();
                if let Some(f) = crate::algebra::elem::combine(&parts) {
                    let id = crate::algebra::elem::intern(f);
                    let mut atoms = skeleton.atoms.clone();
                    atoms[pos].kind = Kind::Elem(id);
                    out.add_raw(atoms, Poly::power(small, p), dim);
                }
            }
        }
        out
    }

    /// The largest label used (for choosing fresh labels).
    pub fn max_label(&self) -> Label {
        self.terms
            .keys()
            .flat_map(|t| t.atoms.iter().flat_map(|a| a.idx.iter().copied()))
            .max()
            .unwrap_or(0)
            .max(self.free)
    }
}

/// Relabels a term's atoms: free index `i` becomes `free_map[i]`, bound labels are
/// shifted to start at `bound_start`. Returns the atoms and the next unused label.
pub fn relabel(
    term: &Term,
    free: u8,
    free_map: &[Label],
    bound_start: Label,
) -> (Vec<Atom>, Label) {
    let mut next = bound_start;
    let mut atoms = Vec::with_capacity(term.atoms.len());
    for a in &term.atoms {
        let idx: Slots = a
            .idx
            .iter()
            .map(|&l| {
                if l < free {
                    free_map[l as usize]
                } else {
                    let n = bound_start + (l - free);
                    next = next.max(n + 1);
                    n
                }
            })
            .collect();
        atoms.push(Atom::new(a.kind, idx));
    }
    (atoms, next)
}

/// A factor of a product: an expression and the label each of its free indices takes.
pub struct Part<'a> {
    pub expr: &'a TExpr,
    pub labels: Vec<Label>,
}

/// Which coefficient monomials a product keeps: a truncation in one symbol (the small
/// parameter), or everything. A closure `Fn(&Poly) -> Poly` is a truncation too, applied
/// to each partial product; [`Keep`] also tells the product its bound, so that it skips
/// the combinations that cannot survive before forming them.
pub trait Truncation {
    /// The kept part of a coefficient.
    fn apply(&self, p: &Poly) -> Poly;
    /// `Some((s, max))`: only monomials with a power of `s` at most `max` are kept.
    fn bound(&self) -> Option<(Sym, i32)> {
        None
    }
}

impl<F: Fn(&Poly) -> Poly> Truncation for F {
    fn apply(&self, p: &Poly) -> Poly {
        self(p)
    }
}

/// A truncation with a known bound (see [`Truncation`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Every monomial.
    All,
    /// The monomials whose power of `sym` is at most `max`.
    Upto { sym: Sym, max: i32 },
}

impl Truncation for Keep {
    fn apply(&self, p: &Poly) -> Poly {
        match *self {
            Keep::All => p.clone(),
            Keep::Upto { sym, max } => p.truncate(sym, max),
        }
    }

    fn bound(&self) -> Option<(Sym, i32)> {
        match *self {
            Keep::All => None,
            Keep::Upto { sym, max } => Some((sym, max)),
        }
    }
}

/// The einsum product of parts: labels below `free` are the result's free indices, the
/// others (shared between parts) are summed. `keep` decides which coefficient
/// monomials survive (truncation); `dim` is the symbol for the dimension.
pub fn product(parts: &[Part], free: u8, keep: &dyn Truncation, dim: Sym) -> TExpr {
    let mut result = TExpr::zero(free);
    product_into(&mut result, parts, keep, dim, usize::MAX)
        .expect("no limit on the number of products");
    result
}

/// The product grew beyond its limit of raw products ([`product_into`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overflow;

/// [`product`], added into `out` (whose `free` is the result's), forming at most `limit`
/// raw products.
///
/// Depth first: a combination of terms is completed and added (canonicalised, so like
/// terms collect at once) before the next is formed, so nothing but the result is held.
/// With a bounded truncation, a partial product is cut at the bound less the lowest
/// powers the remaining parts can contribute, and a combination whose lowest power
/// already exceeds that is never formed.
pub fn product_into(
    out: &mut TExpr,
    parts: &[Part],
    keep: &dyn Truncation,
    dim: Sym,
    limit: usize,
) -> Result<(), Overflow> {
    if parts.iter().any(|p| p.expr.is_zero()) {
        return Ok(());
    }
    // Labels used by the parts for contraction sit below this; bound ones go above.
    let base: Label = parts
        .iter()
        .flat_map(|p| p.labels.iter().copied())
        .max()
        .map_or(out.free, |m| m.max(out.free).saturating_add(1));
    let bound = keep.bound();
    // The lowest power each part can contribute, and what the parts after `i` can.
    let rest: Vec<i32> = match bound {
        Some((s, _)) => {
            let low: Vec<i32> = parts
                .iter()
                .map(|p| {
                    p.expr
                        .terms
                        .values()
                        .filter_map(|c| c.min_power(s))
                        .min()
                        .unwrap_or(0)
                })
                .collect();
            let mut rest = vec![0; parts.len() + 1];
            for i in (0..parts.len()).rev() {
                rest[i] = rest[i + 1] + low[i];
            }
            rest
        }
        None => vec![0; parts.len() + 1],
    };
    let mut walk = Walk {
        parts,
        keep,
        bound,
        rest,
        dim,
        budget: limit,
        atoms: Vec::new(),
    };
    walk.go(out, 0, &Poly::one(), base)
}

struct Walk<'a, 'b> {
    parts: &'a [Part<'b>],
    keep: &'a dyn Truncation,
    bound: Option<(Sym, i32)>,
    rest: Vec<i32>,
    dim: Sym,
    budget: usize,
    atoms: Vec<Atom>,
}

impl Walk<'_, '_> {
    fn go(
        &mut self,
        out: &mut TExpr,
        i: usize,
        coef: &Poly,
        offset: Label,
    ) -> Result<(), Overflow> {
        let Some(part) = self.parts.get(i) else {
            if self.budget == 0 {
                return Err(Overflow);
            }
            self.budget -= 1;
            out.add_raw(self.atoms.clone(), coef.clone(), self.dim);
            return Ok(());
        };
        let base = self.atoms.len();
        for (t, c) in &part.expr.terms {
            let k = match self.bound {
                Some((s, max)) => coef.mul_upto(c, s, max - self.rest[i + 1]),
                None => self.keep.apply(&coef.mul(c)),
            };
            if k.is_zero() {
                continue;
            }
            let (extra, next) = relabel(t, part.expr.free, &part.labels, offset);
            self.atoms.extend(extra);
            let r = self.go(out, i + 1, &k, next);
            self.atoms.truncate(base);
            r?;
        }
        Ok(())
    }
}

/// Which state each atom kind depends on, for differentiation.
pub struct Vars<'a> {
    /// Whether state variable `v` is a scalar.
    pub scalar: &'a dyn Fn(u8) -> bool,
    /// The quadratic part only: `∇³f` and higher and the derivatives of the noise
    /// moments are zero (f quadratic, Σ constant), as for the Hessian-aware SME.
    pub quadratic: bool,
}

/// `∂/∂z^v` of an expression: for a vector variable the result has one more free index
/// (the last, number `free`); for a scalar variable the same number.
pub fn derivative(e: &TExpr, v: u8, vars: &Vars, dim: Sym) -> TExpr {
    let scalar = (vars.scalar)(v);
    let new_free = if scalar { e.free } else { e.free + 1 };
    let mut out = TExpr::zero(new_free);
    for (t, c) in &e.terms {
        // Shift bound labels up by one to make room for the new free index.
        let free_map: Vec<Label> = (0..e.free).collect();
        let (atoms, fresh) = relabel(t, e.free, &free_map, new_free);
        let j = e.free; // the new index (unused for a scalar variable)
        for (k, a) in atoms.iter().enumerate() {
            // The products that replace factor k (none: it does not depend on the variable).
            let replaced: Vec<Vec<Atom>> = match a.kind {
                Kind::DF(n) if v == 0 && vars.quadratic && n >= 2 => continue,
                Kind::Moment { .. } if v == 0 && vars.quadratic => continue,
                Kind::DF(n) if v == 0 => {
                    let mut idx = a.idx.clone();
                    idx.push(j);
                    vec![vec![Atom::new(Kind::DF(n + 1), idx)]]
                }
                Kind::Moment { r, d } if v == 0 => {
                    let mut idx = a.idx.clone();
                    idx.push(j);
                    vec![vec![Atom::new(Kind::Moment { r, d: d + 1 }, idx)]]
                }
                Kind::State(w) | Kind::Disp(w) if w == v => {
                    if scalar {
                        vec![vec![]]
                    } else {
                        vec![vec![Atom::new(Kind::Delta, vec![a.idx[0], j])]]
                    }
                }
                Kind::Elem(id) => elem_derivative(
                    id,
                    a.idx.first().copied(),
                    v,
                    j,
                    fresh,
                    scalar,
                    vars.quadratic,
                ),
                _ => vec![],
            };
            for rep in replaced {
                let mut all: Vec<Atom> = atoms
                    .iter()
                    .enumerate()
                    .filter(|(m, _)| *m != k)
                    .map(|(_, b)| b.clone())
                    .collect();
                all.extend(rep);
                out.add_raw(all, c.clone(), dim);
            }
        }
    }
    out
}

/// The products that replace an elementwise factor `φ` (at index `l`, none for a
/// function of the scalar states) in `∂/∂z^v_j`: the derivative at the factor's own
/// index (`φ_z δ_lj`, and for the parameter `φ_g ∇²f[l,j] + φ_s ∂_j Σ[l,l]` through the
/// fields it reads there), and the chain rule through each sum over the index it
/// holds, `φ_S ∂_j Σ_k F(k)`, the inner derivative taken at the summed index `fresh`.
/// (Sums over the index are not nested: [`crate::algebra::elem::FExpr::Contract`] is
/// built around elementwise functions only.)
fn elem_derivative(
    id: u32,
    l: Option<Label>,
    v: u8,
    j: Label,
    fresh: Label,
    scalar: bool,
    quadratic: bool,
) -> Vec<Vec<Atom>> {
    use crate::algebra::elem::{self, FExpr};
    let f = elem::get(id);
    let mut reps = local_derivative(&f, l, v, j, scalar, quadratic);
    for c in f.contractions() {
        let FExpr::Contract(inner) = &c else {
            continue;
        };
        let outer = f.derivative_by(&c).simplify();
        if matches!(&outer, FExpr::Const(k) if k.is_zero()) {
            continue;
        }
        let outer = Atom::new(
            Kind::Elem(elem::intern(outer)),
            l.into_iter().collect::<Slots>(),
        );
        for mut rep in local_derivative(inner, Some(fresh), v, j, scalar, quadratic) {
            rep.push(outer.clone());
            reps.push(rep);
        }
    }
    reps
}

/// [`elem_derivative`] at the function's own index `l`, sums over the index held fixed.
fn local_derivative(
    f: &crate::algebra::elem::FExpr,
    l: Option<Label>,
    v: u8,
    j: Label,
    scalar: bool,
    quadratic: bool,
) -> Vec<Vec<Atom>> {
    use crate::algebra::elem::{self, FExpr, Field};
    let here: Slots = l.into_iter().collect();
    let mut reps = Vec::new();
    let derivative = |leaf: FExpr| {
        let df = f.derivative_by(&leaf).simplify();
        // A constant derivative becomes a coefficient when the term is put in canonical
        // form (merging elementwise factors).
        (!matches!(&df, FExpr::Const(k) if k.is_zero()))
            .then(|| Atom::new(Kind::Elem(elem::intern(df)), here.clone()))
    };
    if f.reads_here(v) {
        if let Some(e) = derivative(FExpr::Var(v)) {
            match l {
                Some(l) if !scalar => reps.push(vec![e, Atom::new(Kind::Delta, vec![l, j])]),
                _ => reps.push(vec![e]),
            }
        }
    }
    // ∂_j φ(∇f_l, Σ_ll) = φ_g ∇²f[l,j] + φ_s ∂_j Σ[l,l]; ∇²f survives the quadratic
    // part, ∂Σ does not.
    if let (0, Some(l)) = (v, l) {
        if f.reads_here(Field::Grad.var_id()) {
            if let Some(e) = derivative(FExpr::Field(Field::Grad)) {
                reps.push(vec![e, Atom::new(Kind::DF(2), vec![l, j])]);
            }
        }
        if !quadratic && f.reads_here(Field::NoiseVar.var_id()) {
            if let Some(e) = derivative(FExpr::Field(Field::NoiseVar)) {
                reps.push(vec![
                    e,
                    Atom::new(Kind::Moment { r: 2, d: 1 }, vec![l, l, j]),
                ]);
            }
        }
    }
    reps
}

#[cfg(test)]
mod tests {
    use super::*;
    use num_rational::BigRational;

    const DIM: Sym = 0;

    fn df(k: u8, idx: &[Label]) -> Atom {
        Atom::new(Kind::DF(k), idx.to_vec())
    }

    #[test]
    fn relabeling_and_reordering_give_one_form() {
        // ∇²f[0,a] ∇f[a] written with different bound labels and factor orders.
        let (a, _, _) = canonical(vec![df(2, &[0, 5]), df(1, &[5])], 1);
        let (b, _, _) = canonical(vec![df(1, &[9]), df(2, &[9, 0])], 1);
        assert_eq!(a, b);
        // ∇³f[0,a,b] ∇f[a] ∇f[b] in any order of the slots.
        let (a, _, _) = canonical(vec![df(3, &[7, 0, 3]), df(1, &[3]), df(1, &[7])], 1);
        let (b, _, _) = canonical(vec![df(1, &[4]), df(3, &[0, 4, 2]), df(1, &[2])], 1);
        assert_eq!(a, b);
    }

    /// The smallest encoding over every order of the atoms and every bijection of the
    /// bound labels, by enumeration: the search's definition without its pruning (the
    /// candidate filter, the bound, the symmetry cut) or its first-appearance numbering.
    fn brute(atoms: &[Atom], free: u8) -> Vec<u16> {
        fn perms(n: usize) -> Vec<Vec<usize>> {
            if n == 0 {
                return vec![vec![]];
            }
            let mut out = Vec::new();
            for p in perms(n - 1) {
                for i in 0..=p.len() {
                    let mut q = p.clone();
                    q.insert(i, n - 1);
                    out.push(q);
                }
            }
            out
        }
        let mut bound: Vec<Label> = atoms.iter().flat_map(|a| a.idx.iter().copied()).collect();
        bound.retain(|&l| l >= free);
        bound.sort_unstable();
        bound.dedup();
        let mut best: Option<Vec<u16>> = None;
        for order in perms(atoms.len()) {
            for labels in perms(bound.len()) {
                let rename = |l: Label| match bound.iter().position(|&b| b == l) {
                    Some(i) => free + labels[i] as Label,
                    None => l,
                };
                let mut enc = Vec::new();
                for &i in &order {
                    let a = &atoms[i];
                    enc.extend_from_slice(&a.kind.code());
                    enc.push(a.idx.len() as u16);
                    let split = a.split();
                    for group in [&a.idx[..split], &a.idx[split..]] {
                        let mut g: Vec<u16> = group.iter().map(|&l| rename(l) as u16).collect();
                        g.sort_unstable();
                        enc.extend(g);
                    }
                }
                if best.as_ref().is_none_or(|b| enc < *b) {
                    best = Some(enc);
                }
            }
        }
        best.unwrap_or_default()
    }

    #[test]
    fn the_search_finds_the_smallest_encoding_of_every_relabeling() {
        // Random products of ∇ᵏf and moment tensors with shared (contracted, elementwise
        // and traced) bound labels. The search's result must have the smallest encoding
        // of all relabelings and orders (enumerated by `brute`), be a relabeling of its
        // input, and not depend on how the input is written.
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut rand = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for _ in 0..3000 {
            let free = rand(3) as u8;
            let nbound = 1 + rand(4) as u8;
            let natoms = 1 + rand(4) as usize;
            let mut atoms = Vec::new();
            for _ in 0..natoms {
                let kind = match rand(3) {
                    0 | 1 => Kind::DF(1 + rand(3) as u8),
                    _ => Kind::Moment {
                        r: 2,
                        d: rand(2) as u8,
                    },
                };
                let slots = match kind {
                    Kind::DF(k) => k as usize,
                    Kind::Moment { r, d } => (r + d) as usize,
                    _ => unreachable!(),
                };
                let idx: Vec<Label> = (0..slots)
                    .map(|_| (rand((free + nbound) as u64)) as Label)
                    .collect();
                atoms.push(Atom::new(kind, idx));
            }
            let (term, _, _) = canonical_uncached(atoms.clone(), free);
            let smallest = brute(&atoms, free);
            assert_eq!(brute(&term.atoms, free), smallest, "{atoms:?}");
            let mut enc = Vec::new();
            for a in &term.atoms {
                enc.extend_from_slice(&a.kind.code());
                enc.push(a.idx.len() as u16);
                enc.extend(a.idx.iter().map(|&l| l as u16));
            }
            assert_eq!(enc, smallest, "{atoms:?} gave {term:?}");
            // The same product with its bound labels shifted and its factors reversed.
            let mut other: Vec<Atom> = atoms
                .iter()
                .rev()
                .map(|a| {
                    let split = a.split();
                    // Each symmetric group's slots reversed.
                    let idx: Vec<Label> = a.idx[..split]
                        .iter()
                        .rev()
                        .chain(a.idx[split..].iter().rev())
                        .map(|&l| {
                            if l < free {
                                l
                            } else {
                                2 * (free + nbound) - l + 7
                            }
                        })
                        .collect();
                    Atom::new(a.kind, idx)
                })
                .collect();
            other.rotate_left(rand(natoms as u64) as usize);
            let (again, _, _) = canonical_uncached(other, free);
            assert_eq!(again, term, "{atoms:?}");
        }
    }

    #[test]
    fn different_contractions_stay_different() {
        // ∇²f[0,a]∇²f[a,b]∇f[b]  versus  ∇²f[0,a]∇f[a] ∇²f[b,c]... (closed) — not equal.
        let (a, _, _) = canonical(vec![df(2, &[0, 1]), df(2, &[1, 2]), df(1, &[2])], 1);
        let (b, _, _) = canonical(
            vec![df(2, &[0, 1]), df(1, &[1]), df(2, &[2, 3]), df(1, &[3])],
            1,
        );
        assert_ne!(a, b);
        // tr(H) ∇f  versus  H∇f.
        let (c, _, _) = canonical(vec![df(2, &[1, 1]), df(1, &[0])], 1);
        let (d, _, _) = canonical(vec![df(2, &[0, 1]), df(1, &[1])], 1);
        assert_ne!(c, d);
    }

    #[test]
    fn powers_of_contractions_collect() {
        // (∇f·∇f)^2 written two ways.
        let (a, _, _) = canonical(vec![df(1, &[1]), df(1, &[1]), df(1, &[2]), df(1, &[2])], 0);
        let (b, _, _) = canonical(vec![df(1, &[4]), df(1, &[3]), df(1, &[4]), df(1, &[3])], 0);
        assert_eq!(a, b);
        let mut e = TExpr::zero(0);
        e.add_raw(
            vec![df(1, &[1]), df(1, &[1]), df(1, &[2]), df(1, &[2])],
            Poly::int(1),
            DIM,
        );
        e.add_raw(
            vec![df(1, &[4]), df(1, &[3]), df(1, &[4]), df(1, &[3])],
            Poly::int(-1),
            DIM,
        );
        assert!(e.is_zero());
    }

    #[test]
    fn deltas_contract() {
        let (a, dims, _) = canonical(
            vec![
                Atom::new(Kind::Delta, vec![0, 3]),
                df(2, &[3, 4]),
                df(1, &[4]),
            ],
            1,
        );
        let (b, _, _) = canonical(vec![df(2, &[0, 1]), df(1, &[1])], 1);
        assert_eq!((a, dims), (b, 0));
        let (_, dims, _) = canonical(vec![Atom::new(Kind::Delta, vec![2, 2])], 0);
        assert_eq!(dims, 1);
    }

    #[test]
    fn derivative_of_gradient_norm() {
        // ∂_j (∇f·∇f) = 2 ∇²f[j,a] ∇f[a]
        let e = TExpr::from_atoms(vec![df(1, &[0]), df(1, &[0])], 0, Poly::one(), DIM);
        let scalar = |_: u8| false;
        let d = derivative(
            &e,
            0,
            &Vars {
                scalar: &scalar,
                quadratic: false,
            },
            DIM,
        );
        let want = TExpr::from_atoms(vec![df(2, &[0, 1]), df(1, &[1])], 1, Poly::int(2), DIM);
        assert_eq!(d, want);
    }

    /// The chain rule through a sum over the index: ∂_j ‖m‖ = m_j/‖m‖ (m state 1), and
    /// ∂_j (m_i/‖m‖) = δ_ij/‖m‖ − m_i m_j/‖m‖³; each result is compared with the function
    /// written by hand, by value at the comparison points.
    #[test]
    fn derivatives_through_a_norm() {
        use crate::algebra::elem::{self, FExpr};
        use num_traits::One;
        // A term's elementwise factors and states multiplied as functions at one index
        // (the comparison points read every index alike).
        fn product(t: &Term, c: &Poly) -> FExpr {
            t.atoms
                .iter()
                .map(|a| match a.kind {
                    Kind::Elem(id) => elem::get(id),
                    Kind::State(v) => FExpr::Var(v),
                    k => panic!("unexpected {k:?}"),
                })
                .fold(FExpr::Const(c.clone()), FExpr::times)
        }
        elem::scoped(elem::Table::default(), || {
            let half = BigRational::new(1.into(), 2.into());
            let norm2 = FExpr::Contract(Box::new(
                FExpr::Var(1).pow(BigRational::from_integer(2.into())),
            ));
            let norm = norm2.clone().pow(half.clone());
            let vars = Vars {
                scalar: &|_| false,
                quadratic: false,
            };
            let e = TExpr::from_atoms(
                vec![Atom::new(
                    Kind::Elem(elem::intern(norm.clone())),
                    Slots::new(),
                )],
                0,
                Poly::one(),
                DIM,
            );
            let d = derivative(&e, 1, &vars, DIM);
            // m_j/‖m‖: the state at the new index times the scalar 1/‖m‖.
            let want = FExpr::Var(1).times(norm.clone().pow(-BigRational::one()));
            let [(t, c)] = &d.terms.iter().collect::<Vec<_>>()[..] else {
                panic!("one term: {d:?}")
            };
            assert_eq!(elem::fingerprint(&product(t, c)), elem::fingerprint(&want));
            // ∂_j (m_i/‖m‖): δ_ij/‖m‖ and the outer product of m/‖m‖³ and m.
            let unit = FExpr::Var(1).times(norm.clone().pow(-BigRational::one()));
            let e = TExpr::from_atoms(
                vec![Atom::new(Kind::Elem(elem::intern(unit)), vec![0])],
                1,
                Poly::one(),
                DIM,
            );
            let d = derivative(&e, 1, &vars, DIM);
            assert_eq!(d.terms.len(), 2, "{d:?}");
            for (t, c) in &d.terms {
                let kinds: Vec<Kind> = t.atoms.iter().map(|a| a.kind).collect();
                if kinds.contains(&Kind::Delta) {
                    assert!(c.is_one(), "{d:?}");
                    let id = kinds.iter().find_map(|k| match k {
                        Kind::Elem(id) => Some(*id),
                        _ => None,
                    });
                    let want = norm.clone().pow(-BigRational::one());
                    assert_eq!(
                        elem::fingerprint(&elem::get(id.expect("1/‖m‖"))),
                        elem::fingerprint(&want)
                    );
                } else {
                    // −(m_i ‖m‖⁻³) m_j: the product of the two factors' functions
                    // (their indices differ) is −m² ‖m‖⁻³ at the comparison points.
                    let product = product(t, c);
                    let want = FExpr::Var(1)
                        .pow(BigRational::from_integer(2.into()))
                        .times(
                            norm2
                                .clone()
                                .pow(-half.clone() * BigRational::from_integer(3.into())),
                        )
                        .scale(&Poly::int(-1));
                    assert_eq!(elem::fingerprint(&product), elem::fingerprint(&want));
                }
            }
        });
    }

    #[test]
    fn linearly_dependent_elementwise_functions_cancel() {
        use crate::algebra::elem::{self, FExpr};
        elem::scoped(elem::Table::default(), || {
            // σ0 √u/P ⊙ ∇f + ε0/P ⊙ ∇f - ∇f = 0 with P = σ0 √u + ε0 (symbols 1, 2; state 1).
            let (s0, e0) = (Poly::power(1, 1), Poly::power(2, 1));
            let minus_one = -BigRational::from_integer(1.into());
            let p = FExpr::Var(1)
                .sqrt()
                .scale(&s0)
                .plus(FExpr::Const(e0.clone()));
            let a = elem::intern(FExpr::Var(1).sqrt().times(p.clone().pow(minus_one.clone())));
            let b = elem::intern(p.pow(minus_one));
            let mut e = TExpr::zero(1);
            e.add_raw(
                vec![Atom::new(Kind::Elem(a), vec![0]), df(1, &[0])],
                s0,
                DIM,
            );
            e.add_raw(
                vec![Atom::new(Kind::Elem(b), vec![0]), df(1, &[0])],
                e0,
                DIM,
            );
            e.add_raw(vec![df(1, &[0])], Poly::int(-1), DIM);
            assert_eq!(e.len(), 3, "three different terms before collecting");
            let collected = e.collect_elementwise(0, DIM);
            assert!(collected.is_zero(), "{collected:?}");
        });
    }
}
