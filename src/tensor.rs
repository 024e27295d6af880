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

use crate::poly::{Poly, Sym};
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
    /// An elementwise function of the state ([`crate::elem`]), by number: one slot (the
    /// component index it is applied at) or none (a function of the scalar states).
    Elem(u32),
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
        }
    }
}

/// A factor with its index slots.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Atom {
    pub kind: Kind,
    pub idx: Vec<Label>,
}

impl Atom {
    pub fn new(kind: Kind, idx: Vec<Label>) -> Atom {
        Atom { kind, idx }
    }

    /// The symmetric slot groups as ranges into `idx`.
    #[allow(
        clippy::single_range_in_vec_init,
        reason = "a list of slot groups that often has one element"
    )]
    fn group_ranges(&self) -> Vec<std::ops::Range<usize>> {
        match self.kind {
            Kind::Moment { r, .. } => {
                let r = r as usize;
                vec![0..r, r..self.idx.len()]
            }
            _ => vec![0..self.idx.len()],
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
type Memo = std::collections::HashMap<(u8, Vec<Atom>), Canon>;

/// A canonical term, the power of the dimension its contraction produced, and a
/// constant factor that merging elementwise functions left over.
pub type Canon = (Term, u32, Poly);

thread_local! {
    /// Canonical forms already computed: the same raw products recur across the orders
    /// and moments of a derivation. A pure function's memo, so results do not depend on it.
    static CANONICAL: std::cell::RefCell<Memo> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

/// Entries kept in the memo before it is cleared.
const MEMO_LIMIT: usize = 1 << 18;

/// Puts a raw product in canonical form. Returns the term and how many factors of the
/// dimension `d` the contraction produced (`δ_aa = d`).
pub fn canonical(mut atoms: Vec<Atom>, free: u8) -> Canon {
    // Factors sorted by kind and bound labels renamed in order of first appearance: raw
    // products that differ only in factor order or in the numbers of their summed indices
    // mostly share one memo entry (the result does not depend on either).
    atoms.sort_by_key(|a| a.kind.code());
    let mut map = [u8::MAX; 256];
    let mut next = free;
    for a in &mut atoms {
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

/// Empties this thread's memo of canonical forms (benchmarks use it to measure cold runs).
pub fn clear_memo() {
    CANONICAL.with(|m| m.borrow_mut().clear());
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
    let factor = match merge_elementwise(&mut atoms) {
        Some(f) => f,
        None => return (Term::default(), 0, Poly::zero()),
    };
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

/// Merges the state components and elementwise functions that share an index into a
/// single factor (a bare state component stays a [`Kind::State`]). Returns the constant
/// factor left when a merged function is constant, or `None` when it vanishes.
fn merge_elementwise(atoms: &mut Vec<Atom>) -> Option<Poly> {
    use crate::elem::{self, FExpr};
    let is_elementwise =
        |a: &Atom| matches!(a.kind, Kind::State(_) | Kind::Elem(_)) && a.idx.len() <= 1;
    if atoms.iter().filter(|a| is_elementwise(a)).count() < 2
        && !atoms.iter().any(|a| matches!(a.kind, Kind::Elem(_)))
    {
        return Some(Poly::one());
    }
    let mut keys: Vec<Option<Label>> = Vec::new();
    for a in atoms.iter().filter(|a| is_elementwise(a)) {
        let k = a.idx.first().copied();
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    let mut factor = Poly::one();
    for key in keys {
        let (group, rest): (Vec<Atom>, Vec<Atom>) = atoms
            .drain(..)
            .partition(|a| is_elementwise(a) && a.idx.first().copied() == key);
        *atoms = rest;
        if let [a] = &group[..] {
            if matches!(a.kind, Kind::State(_)) {
                atoms.push(a.clone());
                continue;
            }
        }
        let product = FExpr::Prod(
            group
                .iter()
                .map(|a| match a.kind {
                    Kind::State(v) => FExpr::Var(v),
                    Kind::Elem(id) => elem::get(id),
                    _ => unreachable!("only elementwise atoms are grouped"),
                })
                .collect(),
        )
        .simplify();
        let idx: Vec<Label> = key.into_iter().collect();
        // A constant factor of the function belongs to the coefficient.
        let product = match product {
            FExpr::Prod(items) if matches!(items.first(), Some(FExpr::Const(_))) => {
                let mut items = items;
                if let FExpr::Const(c) = items.remove(0) {
                    factor = factor.mul(&c);
                }
                FExpr::Prod(items).simplify()
            }
            other => other,
        };
        match product {
            FExpr::Const(c) => {
                if c.is_zero() {
                    return None;
                }
                factor = factor.mul(&c);
                // A constant at a free index is a constant vector: keep the index alive.
                if let Some(l) = key {
                    atoms.push(Atom::new(Kind::One, vec![l]));
                }
            }
            FExpr::Var(v) => atoms.push(Atom::new(Kind::State(v), idx)),
            f => {
                let id = elem::intern(f);
                if elem::is_zero(id) {
                    return None;
                }
                atoms.push(Atom::new(Kind::Elem(id), idx));
            }
        }
    }
    Some(factor)
}

/// The smallest encoding over orderings of the atoms and labelings of bound indices.
fn search(atoms: Vec<Atom>, free: u8) -> Term {
    if atoms.is_empty() {
        return Term::default();
    }
    let mut best: Option<(Vec<u16>, Vec<Atom>)> = None;
    let mut budget = SEARCH_LIMIT;
    let mut state = SearchState {
        remaining: (0..atoms.len()).collect(),
        map: [u8::MAX; 256],
        next: free,
        encoding: Vec::new(),
        out: Vec::new(),
    };
    dfs(&atoms, free, &mut state, &mut best, &mut budget);
    let (_, out) = best.expect("at least one complete labeling");
    Term { atoms: out }
}

#[derive(Clone)]
struct SearchState {
    remaining: Vec<usize>,
    map: [u8; 256],
    next: u8,
    encoding: Vec<u16>,
    out: Vec<Atom>,
}

/// Relabeling map of the search: old bound label → new label (`u8::MAX`: unassigned).
type LabelMap = [u8; 256];

/// One way to place an atom: encoding, the relabeled atom, the map and next label after.
type Placement = (Vec<u16>, Atom, LabelMap, u8);

/// All ways to place atom `a` next: its encoding, the relabeled atom, the new state.
fn placements(a: &Atom, free: u8, st: &SearchState) -> Vec<Placement> {
    // The common case: no group has two unassigned bound labels, so there is one
    // placement (what the general loop below gives, without its intermediate copies).
    let ranges = a.group_ranges();
    let single = ranges.iter().all(|r| {
        let mut first: Option<Label> = None;
        a.idx[r.clone()].iter().all(|&l| {
            if l < free || st.map[l as usize] != u8::MAX {
                return true;
            }
            match first {
                None => {
                    first = Some(l);
                    true
                }
                Some(f) => f == l,
            }
        })
    });
    if single {
        let mut map = st.map;
        let mut next = st.next;
        let code = a.kind.code();
        let mut full: Vec<u16> = Vec::with_capacity(4 + a.idx.len());
        full.extend_from_slice(&code);
        full.push(a.idx.len() as u16);
        let mut idx: Vec<Label> = Vec::with_capacity(a.idx.len());
        for range in ranges {
            let start = idx.len();
            for &l in &a.idx[range] {
                if l >= free && map[l as usize] == u8::MAX {
                    map[l as usize] = next;
                    next += 1;
                }
                idx.push(if l < free { l } else { map[l as usize] });
            }
            idx[start..].sort_unstable();
        }
        full.extend(idx.iter().map(|&l| l as u16));
        return vec![(full, Atom::new(a.kind, idx), map, next)];
    }
    let mut results: Vec<(Vec<u16>, Vec<Label>, LabelMap, u8)> =
        vec![(Vec::new(), Vec::new(), st.map, st.next)];
    for range in ranges {
        let slots = &a.idx[range];
        let mut next_results = Vec::new();
        for (enc, idx, map, next) in results {
            // Unassigned bound labels of this group, in order of first appearance.
            let mut unassigned: Vec<Label> = Vec::new();
            for &l in slots {
                if l >= free && map[l as usize] == u8::MAX && !unassigned.contains(&l) {
                    unassigned.push(l);
                }
            }
            for perm in permutations(&unassigned) {
                let mut map2 = map;
                let mut next2 = next;
                for &l in &perm {
                    map2[l as usize] = next2;
                    next2 += 1;
                }
                let mut group: Vec<Label> = slots
                    .iter()
                    .map(|&l| if l < free { l } else { map2[l as usize] })
                    .collect();
                group.sort_unstable();
                let mut enc2 = enc.clone();
                enc2.extend(group.iter().map(|&l| l as u16));
                let mut idx2 = idx.clone();
                idx2.extend(group);
                next_results.push((enc2, idx2, map2, next2));
            }
        }
        results = next_results;
    }
    let code = a.kind.code();
    results
        .into_iter()
        .map(|(enc, idx, map, next)| {
            let mut full = code.to_vec();
            full.push(idx.len() as u16);
            full.extend(enc);
            (full, Atom::new(a.kind, idx), map, next)
        })
        .collect()
}

fn permutations(items: &[Label]) -> Vec<Vec<Label>> {
    if items.len() <= 1 {
        return vec![items.to_vec()];
    }
    let mut out = Vec::new();
    for i in 0..items.len() {
        let mut rest = items.to_vec();
        let first = rest.remove(i);
        for mut p in permutations(&rest) {
            p.insert(0, first);
            out.push(p);
        }
    }
    out
}

/// The search over placements, depth first; `st` is extended before each descent and
/// restored after it (no copies of the partial labeling).
fn dfs(
    atoms: &[Atom],
    free: u8,
    st: &mut SearchState,
    best: &mut Option<(Vec<u16>, Vec<Atom>)>,
    budget: &mut usize,
) {
    if st.remaining.is_empty() {
        if best.as_ref().is_none_or(|(b, _)| st.encoding < *b) {
            *best = Some((st.encoding.clone(), st.out.clone()));
        }
        return;
    }
    if *budget == 0 && best.is_some() {
        return;
    }
    *budget = budget.saturating_sub(1);
    // Candidate next atoms, keep only those with the smallest encoding. An encoding
    // starts with the atom's kind code (three numbers, the same length for every kind),
    // so only atoms of the smallest code can give the smallest encoding: the others are
    // not placed at all (the result is the same, the work much less).
    let min_code = st
        .remaining
        .iter()
        .map(|&ai| atoms[ai].kind.code())
        .min()
        .expect("atoms remain");
    let mut cands: Vec<(Vec<u16>, usize, Atom, LabelMap, u8)> = Vec::new();
    for (pos, &ai) in st.remaining.iter().enumerate() {
        if atoms[ai].kind.code() != min_code {
            continue;
        }
        for (enc, atom, map, next) in placements(&atoms[ai], free, st) {
            match cands.first() {
                Some((e, ..)) if enc > *e => continue,
                Some((e, ..)) if enc < *e => cands.clear(),
                _ => {}
            }
            cands.push((enc, pos, atom, map, next));
        }
    }
    // Prune against the best complete encoding found so far.
    if let (Some((b, _)), Some((e, ..))) = (best.as_ref(), cands.first()) {
        let n = (st.encoding.len() + e.len()).min(b.len());
        let prefix = st.encoding.iter().chain(e.iter()).take(n);
        if prefix.cmp(b[..n].iter()) == std::cmp::Ordering::Greater {
            return;
        }
    }
    for (enc, pos, atom, map, next) in cands {
        let removed = st.remaining.remove(pos);
        let (map0, next0, len0) = (st.map, st.next, st.encoding.len());
        st.map = map;
        st.next = next;
        st.encoding.extend(enc);
        st.out.push(atom);
        dfs(atoms, free, st, best, budget);
        st.out.pop();
        st.encoding.truncate(len0);
        st.map = map0;
        st.next = next0;
        st.remaining.insert(pos, removed);
    }
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
        if factor.is_zero() {
            return;
        }
        let coef = if dims > 0 {
            coef.shift(dim, dims as i32)
        } else {
            coef
        };
        let coef = if factor == Poly::one() {
            coef
        } else {
            coef.mul(&factor)
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
    /// identically zero, which [`crate::elem`] decides numerically). Distinct functions
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
                let parts: Vec<(Poly, crate::elem::FExpr)> = members
                    .iter()
                    .map(|(id, c)| (c.coeff(small, p), crate::elem::get(*id)))
                    .filter(|(c, _)| !c.is_zero())
                    .collect();
                if let Some(f) = crate::elem::combine(&parts) {
                    let id = crate::elem::intern(f);
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
        let idx = a
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
        let (atoms, _) = relabel(t, e.free, &free_map, new_free);
        let j = e.free; // the new index (unused for a scalar variable)
        for (k, a) in atoms.iter().enumerate() {
            let replaced: Option<Vec<Atom>> = match a.kind {
                Kind::DF(n) if v == 0 && vars.quadratic && n >= 2 => continue,
                Kind::Moment { .. } if v == 0 && vars.quadratic => continue,
                Kind::DF(n) if v == 0 => {
                    let mut idx = a.idx.clone();
                    idx.push(j);
                    Some(vec![Atom::new(Kind::DF(n + 1), idx)])
                }
                Kind::Moment { r, d } if v == 0 => {
                    let mut idx = a.idx.clone();
                    idx.push(j);
                    Some(vec![Atom::new(Kind::Moment { r, d: d + 1 }, idx)])
                }
                Kind::State(w) | Kind::Disp(w) if w == v => {
                    if scalar {
                        Some(vec![])
                    } else {
                        Some(vec![Atom::new(Kind::Delta, vec![a.idx[0], j])])
                    }
                }
                Kind::Elem(id) => {
                    let f = crate::elem::get(id);
                    if !f.reads(v) {
                        None
                    } else {
                        let df = f.derivative(v).simplify();
                        if matches!(&df, crate::elem::FExpr::Const(k) if k.is_zero()) {
                            continue;
                        }
                        // A constant derivative becomes a coefficient when the term is
                        // put in canonical form (merging elementwise factors).
                        let id = crate::elem::intern(df);
                        let mut rep = vec![Atom::new(Kind::Elem(id), a.idx.clone())];
                        if !scalar {
                            if let Some(l) = a.idx.first() {
                                rep.push(Atom::new(Kind::Delta, vec![*l, j]));
                            }
                        }
                        Some(rep)
                    }
                }
                _ => None,
            };
            if let Some(rep) = replaced {
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

    #[test]
    fn linearly_dependent_elementwise_functions_cancel() {
        use crate::elem::{self, FExpr};
        elem::reset();
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
    }
}
