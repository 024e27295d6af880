//! Scalar expression graphs: the compiler's intermediate form.
//!
//! Everything the simulation computes per path (one optimizer step, the SME's drift and
//! diffusion, the test functions) is first written as a [`Graph`] of scalar operations
//! over numbered inputs: a concrete problem fixes the dimension, so vectors and tensors
//! become their components. Nodes are hash-consed (one node per distinct operation, so
//! common subexpressions are shared), constants are folded as nodes are made, and
//! [`Graph::diff`] differentiates symbolically, which is how ∇f, ∇²f and ∂Σ come from
//! the problem's objective and noise. [`super::tape`] turns a graph's outputs into a
//! flat program over batches of paths; [`Graph::eval`] is the slow reference.

use ndarray::Array2;
use std::collections::HashMap;
use std::sync::Arc;

/// A node of a [`Graph`].
pub type Id = u32;

/// Functions of one argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unary {
    Neg,
    Sqrt,
    /// `sqrt(max(a, 0))`: the pivots of a Cholesky factorisation of a matrix that is
    /// positive semidefinite up to rounding.
    SqrtPos,
    Exp,
    Log,
    Sin,
    Cos,
    Tanh,
    Abs,
    Sign,
    /// `log(1 + exp(a))`, computed without overflow.
    Softplus,
    /// `1/(1 + exp(-a))`.
    Sigmoid,
    /// Φ(a), the standard normal distribution function ([`super::vmath::ncdf`]).
    Ncdf,
    /// φ(a), the standard normal density ([`super::vmath::npdf`]).
    Npdf,
}

/// Functions of two arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Binary {
    Add,
    Sub,
    Mul,
    Div,
    /// `a/b`, or 0 where `b = 0` (a zero pivot's column of a Cholesky factor).
    DivOrZero,
    /// `a^b` for real `b`.
    Pow,
}

/// One operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// A constant (its bits, so that nodes can be hashed).
    Const(u64),
    /// Input number `i`.
    Input(u32),
    Unary(Unary, Id),
    Binary(Binary, Id, Id),
    /// `a^n` for an integer `n`, by repeated multiplication.
    PowI(Id, i32),
    /// Φ₂(h, k; ρ), the standard bivariate normal distribution function
    /// ([`super::gauss::bvn`]), of the nodes `(h, k, ρ)`.
    Bvn(Id, Id, Id),
    /// Column `c` of the data row that a [`Op::RowMean`] is averaging over: it has a
    /// value only inside a row mean's body.
    Row(u32),
    /// `(1/n) Σᵢ body(rowᵢ)`: the mean over the graph's data rows ([`Graph::set_rows`])
    /// of a node that reads [`Op::Row`]. A finite sum stays one node over one row, however
    /// many rows there are; the tape runs its body over the rows.
    RowMean(Id),
    /// The index `0 … n−1` of the data row that a [`Op::RowMean`] is averaging over: like
    /// [`Op::Row`], it has a value only inside a row mean's body.
    RowIndex,
    /// A standard normal that is a function of its operands' values `(stream, index)`:
    /// [`super::rng::counter_normal`]. Inside a row mean with `index` the
    /// [`Op::RowIndex`], one normal per row, drawn again identically wherever the same
    /// two values meet.
    Normal(Id, Id),
}

impl Op {
    /// The nodes this operation reads, in order.
    pub fn children(self) -> impl Iterator<Item = Id> {
        let (a, b, c) = match self {
            Op::Const(_) | Op::Input(_) | Op::Row(_) | Op::RowIndex => (None, None, None),
            Op::Unary(_, a) | Op::PowI(a, _) | Op::RowMean(a) => (Some(a), None, None),
            Op::Binary(_, a, b) | Op::Normal(a, b) => (Some(a), Some(b), None),
            Op::Bvn(h, k, r) => (Some(h), Some(k), Some(r)),
        };
        a.into_iter().chain(b).chain(c)
    }
}

impl Unary {
    pub fn apply(self, a: f64) -> f64 {
        match self {
            Unary::Neg => -a,
            Unary::Sqrt => a.sqrt(),
            Unary::SqrtPos => a.max(0.0).sqrt(),
            Unary::Sin => a.sin(),
            Unary::Cos => a.cos(),
            Unary::Tanh => a.tanh(),
            Unary::Abs => a.abs(),
            Unary::Sign => {
                if a > 0.0 {
                    1.0
                } else if a < 0.0 {
                    -1.0
                } else {
                    0.0
                }
            }
            // The tapes' vectorizable forms, so that every evaluator agrees bit for bit.
            Unary::Exp => super::vmath::exp(a),
            Unary::Log => super::vmath::log(a),
            Unary::Softplus => super::vmath::softplus(a),
            Unary::Sigmoid => super::vmath::sigmoid(a),
            Unary::Ncdf => super::vmath::ncdf(a),
            Unary::Npdf => super::vmath::npdf(a),
        }
    }
}

impl Binary {
    pub fn apply(self, a: f64, b: f64) -> f64 {
        match self {
            Binary::Add => a + b,
            Binary::Sub => a - b,
            Binary::Mul => a * b,
            Binary::Div => a / b,
            Binary::DivOrZero => {
                if b == 0.0 {
                    0.0
                } else {
                    a / b
                }
            }
            Binary::Pow => a.powf(b),
        }
    }
}

/// `a^n` by repeated squaring (exact signs for negative bases).
pub fn powi(a: f64, n: i32) -> f64 {
    a.powi(n)
}

/// A hash-consed graph of scalar operations.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    nodes: Vec<Op>,
    index: HashMap<Op, Id>,
    inputs: u32,
    /// Per node: whether it varies with the data row (reads [`Op::Row`] outside a row
    /// mean).
    row_dep: Vec<bool>,
    /// The data rows that [`Op::RowMean`] averages over (one row per sample, the
    /// columns that [`Op::Row`] numbers), shared, never copied.
    rows: Option<Arc<Array2<f64>>>,
}

/// The graph grew past [`Graph::MAX_NODES`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooLarge;

impl Graph {
    /// A limit that keeps a compiled program (and its compile time) bounded.
    pub const MAX_NODES: usize = 4_000_000;

    pub fn new() -> Graph {
        Graph::default()
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Whether the graph stayed under [`Graph::MAX_NODES`].
    pub fn check_size(&self) -> Result<(), TooLarge> {
        if self.nodes.len() > Self::MAX_NODES {
            Err(TooLarge)
        } else {
            Ok(())
        }
    }

    /// The number of inputs any node refers to (one more than the largest index).
    pub fn inputs(&self) -> u32 {
        self.inputs
    }

    pub fn op(&self, id: Id) -> Op {
        self.nodes[id as usize]
    }

    fn intern(&mut self, op: Op) -> Id {
        if let Some(&id) = self.index.get(&op) {
            return id;
        }
        let id = self.nodes.len() as Id;
        let dep = match op {
            Op::Row(_) | Op::RowIndex => true,
            Op::RowMean(_) => false,
            _ => op.children().any(|c| self.row_dep[c as usize]),
        };
        self.nodes.push(op);
        self.row_dep.push(dep);
        self.index.insert(op, id);
        id
    }

    /// Sets the data rows that row means average over (shared).
    pub fn set_rows(&mut self, rows: Arc<Array2<f64>>) {
        self.rows = Some(rows);
    }

    /// The data rows that row means average over.
    pub fn rows(&self) -> Option<&Arc<Array2<f64>>> {
        self.rows.as_ref()
    }

    /// Column `c` of the row being averaged over (see [`Op::Row`]).
    pub fn row(&mut self, c: u32) -> Id {
        self.intern(Op::Row(c))
    }

    /// The index of the row being averaged over (see [`Op::RowIndex`]).
    pub fn row_index(&mut self) -> Id {
        self.intern(Op::RowIndex)
    }

    /// A standard normal, a function of `(stream, index)` (see [`Op::Normal`]).
    pub fn normal(&mut self, stream: Id, index: Id) -> Id {
        self.intern(Op::Normal(stream, index))
    }

    /// The mean of `body` over the data rows; `body` itself when it does not vary with
    /// the row (the mean of n equal values, exactly).
    pub fn row_mean(&mut self, body: Id) -> Id {
        if !self.row_dep[body as usize] {
            return body;
        }
        self.intern(Op::RowMean(body))
    }

    /// Whether a node varies with the data row: it reads [`Op::Row`] other than inside a
    /// row mean. Such a node has a value only inside a row mean's body.
    pub fn row_dep(&self, id: Id) -> bool {
        self.row_dep[id as usize]
    }

    pub fn constant(&mut self, v: f64) -> Id {
        // One zero: -0.0 and 0.0 are the same node.
        let v = if v == 0.0 { 0.0 } else { v };
        self.intern(Op::Const(v.to_bits()))
    }

    pub fn input(&mut self, i: u32) -> Id {
        self.inputs = self.inputs.max(i + 1);
        self.intern(Op::Input(i))
    }

    /// The constant value of a node, if it is one.
    pub fn value(&self, id: Id) -> Option<f64> {
        match self.nodes[id as usize] {
            Op::Const(bits) => Some(f64::from_bits(bits)),
            _ => None,
        }
    }

    fn is(&self, id: Id, v: f64) -> bool {
        self.value(id) == Some(v)
    }

    pub fn unary(&mut self, u: Unary, a: Id) -> Id {
        if let Some(x) = self.value(a) {
            return self.constant(u.apply(x));
        }
        if u == Unary::Neg {
            if let Op::Unary(Unary::Neg, inner) = self.op(a) {
                return inner;
            }
        }
        self.intern(Op::Unary(u, a))
    }

    pub fn binary(&mut self, b: Binary, x: Id, y: Id) -> Id {
        if let (Some(p), Some(q)) = (self.value(x), self.value(y)) {
            return self.constant(b.apply(p, q));
        }
        match b {
            Binary::Add => {
                if self.is(x, 0.0) {
                    return y;
                }
                if self.is(y, 0.0) {
                    return x;
                }
                // Signs move out of sums and products (exactly: IEEE rounding is
                // symmetric), so that x + (−a)·b is one instruction, x − a·b.
                if let Op::Unary(Unary::Neg, inner) = self.op(y) {
                    return self.binary(Binary::Sub, x, inner);
                }
                if let Op::Unary(Unary::Neg, inner) = self.op(x) {
                    return self.binary(Binary::Sub, y, inner);
                }
                // x + (y − x) = y: a rule's `grad f(x) + xi` with minibatch noise
                // `xi = g_B − ∇f` is the minibatch gradient, without the full one.
                if let Op::Binary(Binary::Sub, a, b) = self.op(y) {
                    if b == x {
                        return a;
                    }
                }
                if let Op::Binary(Binary::Sub, a, b) = self.op(x) {
                    if b == y {
                        return a;
                    }
                }
                let (x, y) = (x.min(y), x.max(y));
                self.intern(Op::Binary(b, x, y))
            }
            Binary::Sub => {
                if self.is(y, 0.0) {
                    return x;
                }
                if self.is(x, 0.0) {
                    return self.unary(Unary::Neg, y);
                }
                if x == y {
                    return self.constant(0.0);
                }
                if let Op::Unary(Unary::Neg, inner) = self.op(y) {
                    return self.binary(Binary::Add, x, inner);
                }
                self.intern(Op::Binary(b, x, y))
            }
            Binary::Mul => {
                if self.is(x, 0.0) || self.is(y, 0.0) {
                    return self.constant(0.0);
                }
                if self.is(x, 1.0) {
                    return y;
                }
                if self.is(y, 1.0) {
                    return x;
                }
                if self.is(x, -1.0) {
                    return self.unary(Unary::Neg, y);
                }
                if self.is(y, -1.0) {
                    return self.unary(Unary::Neg, x);
                }
                // Constants gather: c·(k·a) = (ck)·a, c·(−a) = (−c)·a.
                let (c, other) = match (self.value(x), self.value(y)) {
                    (Some(c), None) => (Some(c), y),
                    (None, Some(c)) => (Some(c), x),
                    _ => (None, x),
                };
                if let Some(c) = c {
                    match self.op(other) {
                        Op::Binary(Binary::Mul, p, q) => {
                            if let Some(k) = self.value(p) {
                                let ck = self.constant(c * k);
                                return self.binary(Binary::Mul, ck, q);
                            }
                            if let Some(k) = self.value(q) {
                                let ck = self.constant(c * k);
                                return self.binary(Binary::Mul, ck, p);
                            }
                        }
                        Op::Unary(Unary::Neg, a) => {
                            let nc = self.constant(-c);
                            return self.binary(Binary::Mul, nc, a);
                        }
                        _ => {}
                    }
                } else {
                    // (−a)·b = −(a·b), exactly.
                    for (a, other) in [(x, y), (y, x)] {
                        if let Op::Unary(Unary::Neg, inner) = self.op(a) {
                            let m = self.binary(Binary::Mul, inner, other);
                            return self.unary(Unary::Neg, m);
                        }
                    }
                }
                let (x, y) = (x.min(y), x.max(y));
                self.intern(Op::Binary(b, x, y))
            }
            Binary::Div | Binary::DivOrZero => {
                if self.is(x, 0.0) {
                    return self.constant(0.0);
                }
                if self.is(y, 1.0) {
                    return x;
                }
                if b == Binary::DivOrZero && self.is(y, 0.0) {
                    return self.constant(0.0);
                }
                if let Some(q) = self.value(y) {
                    if b == Binary::Div {
                        let r = self.constant(1.0 / q);
                        return self.binary(Binary::Mul, x, r);
                    }
                }
                self.intern(Op::Binary(b, x, y))
            }
            Binary::Pow => {
                if let Some(q) = self.value(y) {
                    if q == q.trunc() && q.abs() <= 64.0 {
                        return self.powi(x, q as i32);
                    }
                    if q == 0.5 {
                        return self.unary(Unary::Sqrt, x);
                    }
                }
                self.intern(Op::Binary(b, x, y))
            }
        }
    }

    pub fn powi(&mut self, a: Id, n: i32) -> Id {
        if let Some(x) = self.value(a) {
            return self.constant(powi(x, n));
        }
        match n {
            0 => self.constant(1.0),
            1 => a,
            _ => {
                if let Op::PowI(b, m) = self.op(a) {
                    if let Some(k) = m.checked_mul(n) {
                        return self.powi(b, k);
                    }
                }
                self.intern(Op::PowI(a, n))
            }
        }
    }

    /// Φ₂(h, k; ρ) ([`Op::Bvn`]), folded when all three are constants.
    pub fn bvn(&mut self, h: Id, k: Id, rho: Id) -> Id {
        if let (Some(x), Some(y), Some(r)) = (self.value(h), self.value(k), self.value(rho)) {
            return self.constant(super::gauss::bvn(x, y, r));
        }
        self.intern(Op::Bvn(h, k, rho))
    }

    pub fn add(&mut self, a: Id, b: Id) -> Id {
        self.binary(Binary::Add, a, b)
    }
    pub fn sub(&mut self, a: Id, b: Id) -> Id {
        self.binary(Binary::Sub, a, b)
    }
    pub fn mul(&mut self, a: Id, b: Id) -> Id {
        self.binary(Binary::Mul, a, b)
    }
    pub fn div(&mut self, a: Id, b: Id) -> Id {
        self.binary(Binary::Div, a, b)
    }
    pub fn neg(&mut self, a: Id) -> Id {
        self.unary(Unary::Neg, a)
    }

    /// The sum of several nodes (0 for none), added in order.
    pub fn sum(&mut self, items: impl IntoIterator<Item = Id>) -> Id {
        let mut acc: Option<Id> = None;
        for i in items {
            acc = Some(match acc {
                None => i,
                Some(a) => self.add(a, i),
            });
        }
        acc.unwrap_or_else(|| self.constant(0.0))
    }

    /// `∂ node / ∂ input`, symbolically (nodes are added to the graph).
    pub fn diff(&mut self, node: Id, input: u32) -> Id {
        let mut memo: HashMap<Id, Id> = HashMap::new();
        self.diff_memo(node, input, &mut memo)
    }

    /// The derivatives of several nodes by one input, sharing work.
    pub fn diff_all(&mut self, nodes: &[Id], input: u32) -> Vec<Id> {
        let mut memo: HashMap<Id, Id> = HashMap::new();
        nodes
            .iter()
            .map(|&n| self.diff_memo(n, input, &mut memo))
            .collect()
    }

    fn diff_memo(&mut self, root: Id, input: u32, memo: &mut HashMap<Id, Id>) -> Id {
        // Iterative post-order, so deep graphs cannot overflow the stack.
        let mut stack = vec![(root, false)];
        while let Some((n, expanded)) = stack.pop() {
            if memo.contains_key(&n) {
                continue;
            }
            let children: Vec<Id> = self.op(n).children().collect();
            if !expanded && children.iter().any(|c| !memo.contains_key(c)) {
                stack.push((n, true));
                stack.extend(children.into_iter().map(|c| (c, false)));
                continue;
            }
            let d = self.diff_node(n, input, memo);
            memo.insert(n, d);
        }
        memo[&root]
    }

    fn diff_node(&mut self, n: Id, input: u32, memo: &HashMap<Id, Id>) -> Id {
        let zero = self.constant(0.0);
        match self.op(n) {
            // A normal is a step function of its whole-number operands: flat almost
            // everywhere.
            Op::Const(_) | Op::Row(_) | Op::RowIndex | Op::Normal(..) => zero,
            Op::Input(i) => self.constant(if i == input { 1.0 } else { 0.0 }),
            // The mean over the rows is linear: its derivative is the mean of the body's.
            Op::RowMean(b) => {
                let db = memo[&b];
                if db == zero {
                    return zero;
                }
                self.row_mean(db)
            }
            Op::Unary(u, a) => {
                let da = memo[&a];
                if da == zero {
                    return zero;
                }
                let inner = match u {
                    Unary::Neg => return self.neg(da),
                    Unary::Sqrt | Unary::SqrtPos => {
                        let two = self.constant(2.0);
                        let den = self.mul(two, n);
                        let one = self.constant(1.0);
                        self.div(one, den)
                    }
                    Unary::Exp => n,
                    Unary::Log => {
                        let one = self.constant(1.0);
                        self.div(one, a)
                    }
                    Unary::Sin => self.unary(Unary::Cos, a),
                    Unary::Cos => {
                        let s = self.unary(Unary::Sin, a);
                        self.neg(s)
                    }
                    Unary::Tanh => {
                        let one = self.constant(1.0);
                        let t2 = self.powi(n, 2);
                        self.sub(one, t2)
                    }
                    Unary::Abs => self.unary(Unary::Sign, a),
                    Unary::Sign => return zero,
                    Unary::Softplus => self.unary(Unary::Sigmoid, a),
                    Unary::Sigmoid => {
                        let one = self.constant(1.0);
                        let c = self.sub(one, n);
                        self.mul(n, c)
                    }
                    Unary::Ncdf => self.unary(Unary::Npdf, a),
                    // φ'(a) = −a φ(a)
                    Unary::Npdf => {
                        let m = self.mul(a, n);
                        self.neg(m)
                    }
                };
                self.mul(inner, da)
            }
            Op::PowI(a, k) => {
                let da = memo[&a];
                if da == zero {
                    return zero;
                }
                let c = self.constant(k as f64);
                let p = self.powi(a, k - 1);
                let cp = self.mul(c, p);
                self.mul(cp, da)
            }
            Op::Bvn(h, k, r) => {
                let (dh, dk, dr) = (memo[&h], memo[&k], memo[&r]);
                if (dh, dk, dr) == (zero, zero, zero) {
                    return zero;
                }
                // With s = √(1−ρ²), A = (k − ρh)/s, B = (h − ρk)/s:
                // ∂h = φ(h)Φ(A), ∂k = φ(k)Φ(B), ∂ρ = φ₂(h, k; ρ) = φ(k)φ(B)/s.
                // (At |ρ| = 1 these divide by s = 0.)
                let one = self.constant(1.0);
                let r2 = self.powi(r, 2);
                let s2 = self.sub(one, r2);
                let s = self.unary(Unary::Sqrt, s2);
                let mut terms = Vec::new();
                if dh != zero {
                    let rh = self.mul(r, h);
                    let num = self.sub(k, rh);
                    let a = self.div(num, s);
                    let pa = self.unary(Unary::Ncdf, a);
                    let ph = self.unary(Unary::Npdf, h);
                    let p = self.mul(ph, pa);
                    terms.push(self.mul(p, dh));
                }
                if dk != zero || dr != zero {
                    let rk = self.mul(r, k);
                    let num = self.sub(h, rk);
                    let b = self.div(num, s);
                    let pk = self.unary(Unary::Npdf, k);
                    if dk != zero {
                        let pb = self.unary(Unary::Ncdf, b);
                        let p = self.mul(pk, pb);
                        terms.push(self.mul(p, dk));
                    }
                    if dr != zero {
                        let db = self.unary(Unary::Npdf, b);
                        let p = self.mul(pk, db);
                        let dens = self.div(p, s);
                        terms.push(self.mul(dens, dr));
                    }
                }
                self.sum(terms)
            }
            Op::Binary(b, x, y) => {
                let (dx, dy) = (memo[&x], memo[&y]);
                match b {
                    Binary::Add => self.add(dx, dy),
                    Binary::Sub => self.sub(dx, dy),
                    Binary::Mul => {
                        let p = self.mul(dx, y);
                        let q = self.mul(x, dy);
                        self.add(p, q)
                    }
                    Binary::Div | Binary::DivOrZero => {
                        // (dx - n dy)/y
                        let t = self.mul(n, dy);
                        let num = self.sub(dx, t);
                        self.binary(b, num, y)
                    }
                    Binary::Pow => {
                        // n (dy log x + y dx / x)
                        let lx = self.unary(Unary::Log, x);
                        let a = self.mul(dy, lx);
                        let q = self.div(dx, x);
                        let b2 = self.mul(y, q);
                        let s = self.add(a, b2);
                        self.mul(n, s)
                    }
                }
            }
        }
    }

    /// Copies the nodes `roots` of `other` into this graph, with `other`'s input `i`
    /// replaced by the node `inputs[i]`.
    /// Row means keep their rows: a graph that imports one takes `other`'s data rows.
    pub fn import(&mut self, other: &Graph, roots: &[Id], inputs: &[Id]) -> Vec<Id> {
        let mut map: HashMap<Id, Id> = HashMap::new();
        self.import_mapped(other, roots, inputs, &mut map)
    }

    /// [`Graph::import`] with some of `other`'s nodes already mapped (`map`: those nodes
    /// stand for the given nodes of this graph, and what they read is not copied).
    pub fn import_mapped(
        &mut self,
        other: &Graph,
        roots: &[Id],
        inputs: &[Id],
        map: &mut HashMap<Id, Id>,
    ) -> Vec<Id> {
        if self.rows.is_none() {
            self.rows = other.rows.clone();
        }
        roots
            .iter()
            .map(|&r| self.import_one(other, r, inputs, map, None))
            .collect()
    }

    /// The nodes `body` reads that do not vary with the row, constants left out: what a
    /// row mean's body needs from outside (in id order).
    pub fn frontier(&self, body: Id) -> Vec<Id> {
        let mut out = Vec::new();
        let mut need = vec![body];
        let mut seen = std::collections::HashSet::new();
        while let Some(n) = need.pop() {
            if !seen.insert(n) {
                continue;
            }
            if self.row_dep(n) {
                need.extend(self.op(n).children());
            } else if !matches!(self.op(n), Op::Const(_)) {
                out.push(n);
            }
        }
        out.sort_unstable();
        out
    }

    /// Row means' bodies as a graph of their own over one row: its input `k` stands for
    /// `outer[k]` (which must hold every node of [`Graph::frontier`] of each body) and
    /// input `outer.len() + c` for column `c` of the row, and input `outer.len() + width`
    /// for the row's index ([`Op::RowIndex`]). Returns the graph and the bodies' nodes
    /// in it.
    pub fn row_program(&self, bodies: &[Id], outer: &[Id]) -> (Graph, Vec<Id>) {
        let mut g = Graph::new();
        let mut map: HashMap<Id, Id> = HashMap::new();
        for (k, &n) in outer.iter().enumerate() {
            map.insert(n, g.input(k as u32));
        }
        let width = self.rows.as_ref().map_or(0, |r| r.ncols());
        // The columns, then the index.
        let cols: Vec<Id> = (0..=width)
            .map(|c| g.input((outer.len() + c) as u32))
            .collect();
        let out = bodies
            .iter()
            .map(|&b| g.import_one(self, b, &[], &mut map, Some(&cols)))
            .collect();
        (g, out)
    }

    fn import_one(
        &mut self,
        other: &Graph,
        root: Id,
        inputs: &[Id],
        map: &mut HashMap<Id, Id>,
        rows: Option<&[Id]>,
    ) -> Id {
        // Nodes of a hash-consed graph only refer to earlier nodes: copy in id order.
        let mut need = vec![root];
        let mut order = Vec::new();
        let mut seen = std::collections::HashSet::new();
        while let Some(n) = need.pop() {
            if map.contains_key(&n) || !seen.insert(n) {
                continue;
            }
            order.push(n);
            need.extend(other.op(n).children());
        }
        order.sort_unstable();
        for n in order {
            if map.contains_key(&n) {
                continue;
            }
            let new = match other.op(n) {
                Op::Const(bits) => self.constant(f64::from_bits(bits)),
                Op::Input(i) => inputs
                    .get(i as usize)
                    .copied()
                    .unwrap_or_else(|| self.constant(f64::NAN)),
                Op::Unary(u, a) => self.unary(u, map[&a]),
                Op::PowI(a, k) => self.powi(map[&a], k),
                Op::Binary(b, x, y) => self.binary(b, map[&x], map[&y]),
                Op::Bvn(h, k, r) => self.bvn(map[&h], map[&k], map[&r]),
                // Into a row program, a column becomes that program's input.
                // (`rows` ends with the row's index.)
                Op::Row(c) => match rows {
                    Some(cols) => cols[..cols.len().saturating_sub(1)]
                        .get(c as usize)
                        .copied()
                        .unwrap_or_else(|| self.constant(f64::NAN)),
                    None => self.row(c),
                },
                // Into a row program, the row's index is the input after the columns.
                Op::RowIndex => match rows.and_then(|cols| cols.last()) {
                    Some(&index) => index,
                    None => self.row_index(),
                },
                Op::Normal(s, i) => self.normal(map[&s], map[&i]),
                Op::RowMean(b) => self.row_mean(map[&b]),
            };
            map.insert(n, new);
        }
        map[&root]
    }

    /// The values of `outputs` at the given inputs: the reference evaluation.
    pub fn eval(&self, outputs: &[Id], inputs: &[f64]) -> Vec<f64> {
        let mut vals: HashMap<Id, f64> = HashMap::new();
        let mut need: Vec<Id> = Vec::new();
        for &o in outputs {
            need.push(o);
        }
        // Evaluate every node up to the largest output in id order (children first).
        let top = outputs.iter().copied().max().map_or(0, |m| m as usize + 1);
        let mut live = vec![false; top];
        while let Some(n) = need.pop() {
            if live[n as usize] {
                continue;
            }
            live[n as usize] = true;
            need.extend(self.op(n).children());
        }
        let means: Vec<Id> = (0..live.len() as Id)
            .filter(|&n| live[n as usize] && matches!(self.op(n), Op::RowMean(_)))
            .collect();
        // What each mean's body reads from outside: a mean runs once all of it is known.
        let fronts: HashMap<Id, Vec<Id>> = means
            .iter()
            .map(|&m| (m, self.frontier(self.body(m))))
            .collect();
        for (n, &is_live) in live.iter().enumerate() {
            // A node that varies with the row is evaluated inside its row mean.
            if !is_live || self.row_dep(n as Id) {
                continue;
            }
            let n = n as Id;
            let v = match self.op(n) {
                Op::RowMean(_) => {
                    if !vals.contains_key(&n) {
                        // Every row mean whose outside values are known now, in one pass.
                        let ready: Vec<Id> = means
                            .iter()
                            .copied()
                            .filter(|&m| {
                                !vals.contains_key(&m)
                                    && fronts[&m].iter().all(|f| vals.contains_key(f))
                            })
                            .collect();
                        for (m, v) in ready
                            .iter()
                            .zip(self.means_over_rows(&ready, &vals, inputs))
                        {
                            vals.insert(*m, v);
                        }
                    }
                    vals[&n]
                }
                op => self.apply(op, |c| vals[&c], inputs, None),
            };
            vals.insert(n, v);
        }
        // An output that varies with the row has no value outside a row mean.
        outputs
            .iter()
            .map(|o| vals.get(o).copied().unwrap_or(f64::NAN))
            .collect()
    }

    /// One operation of the reference evaluation, its operands' values from `get`.
    fn apply(
        &self,
        op: Op,
        get: impl Fn(Id) -> f64,
        inputs: &[f64],
        row: Option<(usize, ndarray::ArrayView1<'_, f64>)>,
    ) -> f64 {
        match op {
            Op::Const(bits) => f64::from_bits(bits),
            Op::Input(i) => inputs.get(i as usize).copied().unwrap_or(f64::NAN),
            Op::Unary(u, a) => u.apply(get(a)),
            Op::PowI(a, k) => powi(get(a), k),
            Op::Binary(b, x, y) => b.apply(get(x), get(y)),
            Op::Bvn(h, k, r) => super::gauss::bvn(get(h), get(k), get(r)),
            Op::Row(c) => row
                .and_then(|(_, r)| r.get(c as usize).copied())
                .unwrap_or(f64::NAN),
            Op::RowIndex => row.map_or(f64::NAN, |(i, _)| i as f64),
            Op::Normal(s, i) => super::rng::counter_normal(get(s), get(i)),
            Op::RowMean(_) => f64::NAN,
        }
    }

    /// The body of a row mean (the node itself otherwise).
    fn body(&self, mean: Id) -> Id {
        match self.op(mean) {
            Op::RowMean(b) => b,
            _ => mean,
        }
    }

    /// `(1/n) Σᵢ body(rowᵢ)` of each row mean of `means`, in one pass over the rows:
    /// each summed in row order and divided by n (as the tape does), the nodes that do
    /// not vary with the row read from `outer`. Their bodies' nodes are renumbered into
    /// one array (the outside values first), so that a row costs no hashing.
    fn means_over_rows(&self, means: &[Id], outer: &HashMap<Id, f64>, inputs: &[f64]) -> Vec<f64> {
        let Some(rows) = &self.rows else {
            return vec![f64::NAN; means.len()];
        };
        let mut inner: Vec<Id> = Vec::new();
        let mut need: Vec<Id> = means.iter().map(|&m| self.body(m)).collect();
        let mut seen = std::collections::HashSet::new();
        while let Some(n) = need.pop() {
            if self.row_dep(n) && seen.insert(n) {
                inner.push(n);
                need.extend(self.op(n).children());
            }
        }
        inner.sort_unstable();
        // Local numbering: the outside operands first, then the inner nodes.
        let mut local_of: HashMap<Id, Id> = HashMap::new();
        let mut local: Vec<f64> = Vec::new();
        for &n in &inner {
            for c in self.op(n).children() {
                if !self.row_dep(c) && !local_of.contains_key(&c) {
                    local_of.insert(c, local.len() as Id);
                    local.push(match self.op(c) {
                        Op::Const(bits) => f64::from_bits(bits),
                        _ => outer[&c],
                    });
                }
            }
        }
        let base = local.len();
        for (k, &n) in inner.iter().enumerate() {
            local_of.insert(n, (base + k) as Id);
        }
        let code: Vec<Op> = inner
            .iter()
            .map(|&n| match self.op(n) {
                Op::Unary(u, a) => Op::Unary(u, local_of[&a]),
                Op::PowI(a, k) => Op::PowI(local_of[&a], k),
                Op::Binary(b, x, y) => Op::Binary(b, local_of[&x], local_of[&y]),
                Op::Bvn(h, k, r) => Op::Bvn(local_of[&h], local_of[&k], local_of[&r]),
                Op::Normal(s, i) => Op::Normal(local_of[&s], local_of[&i]),
                op => op,
            })
            .collect();
        let bodies: Vec<usize> = means
            .iter()
            .map(|&m| local_of[&self.body(m)] as usize)
            .collect();
        local.resize(base + inner.len(), 0.0);
        let mut acc = vec![0.0; means.len()];
        for (i, row) in rows.rows().into_iter().enumerate() {
            for (k, &op) in code.iter().enumerate() {
                local[base + k] = self.apply(op, |c| local[c as usize], inputs, Some((i, row)));
            }
            for (a, &b) in acc.iter_mut().zip(&bodies) {
                *a += local[b];
            }
        }
        let n = rows.nrows() as f64;
        acc.into_iter().map(|a| a / n).collect()
    }

    /// Whether a node reads any input.
    pub fn reads_inputs(&self, root: Id) -> bool {
        let mut need = vec![root];
        let mut seen = std::collections::HashSet::new();
        while let Some(n) = need.pop() {
            if !seen.insert(n) {
                continue;
            }
            if let Op::Input(_) = self.op(n) {
                return true;
            }
            need.extend(self.op(n).children());
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_subexpressions_are_shared_and_constants_folded() {
        let mut g = Graph::new();
        let x = g.input(0);
        let y = g.input(1);
        let a = g.mul(x, y);
        let b = g.mul(y, x);
        assert_eq!(a, b);
        let two = g.constant(2.0);
        let three = g.constant(3.0);
        let five = g.add(two, three);
        assert_eq!(g.value(five), Some(5.0));
        let zero = g.constant(0.0);
        assert_eq!(g.mul(x, zero), zero);
        assert_eq!(g.sub(a, a), zero);
    }

    #[test]
    fn signs_move_out_exactly() {
        let mut g = Graph::new();
        let (x, a, b) = (g.input(0), g.input(1), g.input(2));
        let na = g.neg(a);
        let nb = g.neg(b);
        let p = g.mul(na, b);
        let q = g.mul(b, na);
        let r = g.mul(na, nb);
        let s = g.add(x, p); // x + (−a)·b
        let t = g.add(p, x); // (−a)·b + x
        let u = g.sub(x, q); // x − b·(−a)
        let v = g.sub(x, r); // x − (−a)(−b)
        let ab = g.mul(a, b);
        // One node each, no negation: x − a·b, x + a·b, a·b.
        assert_eq!(g.op(s), Op::Binary(Binary::Sub, x, ab));
        assert_eq!((t, r), (s, ab));
        assert_eq!(g.op(u), Op::Binary(Binary::Add, x.min(ab), x.max(ab)));
        assert_eq!(g.op(v), Op::Binary(Binary::Sub, x, ab));
        // The rewritten nodes give the unrewritten formulas' values bit for bit,
        // signed zeros and non-finite values included.
        let vals = [
            0.0,
            -0.0,
            1.5,
            -2.25,
            1e300,
            -1e-300,
            f64::INFINITY,
            f64::NAN,
            3.0,
        ];
        for &xv in &vals {
            for &av in &vals {
                for &bv in &vals {
                    let got = g.eval(&[s, u, v], &[xv, av, bv]);
                    let want = [xv + (-av) * bv, xv - bv * (-av), xv - (-av) * (-bv)];
                    for (g, w) in got.iter().zip(want) {
                        assert!(
                            g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()),
                            "x = {xv}, a = {av}, b = {bv}: {g} vs {w}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn derivatives_match_finite_differences() {
        let mut g = Graph::new();
        let x = g.input(0);
        let y = g.input(1);
        // f = x^4/4 - x^2/2 + tanh(x y) + softplus(y) + sqrt(1 + x^2) * exp(-y) + y^1.5
        let x4 = g.powi(x, 4);
        let q = g.constant(0.25);
        let a = g.mul(q, x4);
        let x2 = g.powi(x, 2);
        let h = g.constant(0.5);
        let b = g.mul(h, x2);
        let mut f = g.sub(a, b);
        let xy = g.mul(x, y);
        let t = g.unary(Unary::Tanh, xy);
        f = g.add(f, t);
        let sp = g.unary(Unary::Softplus, y);
        f = g.add(f, sp);
        let one = g.constant(1.0);
        let r = g.add(one, x2);
        let s = g.unary(Unary::Sqrt, r);
        let ny = g.neg(y);
        let e = g.unary(Unary::Exp, ny);
        let se = g.mul(s, e);
        f = g.add(f, se);
        let p = g.constant(1.5);
        let yp = g.binary(Binary::Pow, y, p);
        f = g.add(f, yp);
        let dx = g.diff(f, 0);
        let dy = g.diff(f, 1);
        let dxy = g.diff(dx, 1);
        let at = [0.7, 1.3];
        let h = 1e-5;
        let fv = |g: &Graph, p: [f64; 2]| g.eval(&[f], &p)[0];
        let fd_x = (fv(&g, [at[0] + h, at[1]]) - fv(&g, [at[0] - h, at[1]])) / (2.0 * h);
        let fd_y = (fv(&g, [at[0], at[1] + h]) - fv(&g, [at[0], at[1] - h])) / (2.0 * h);
        let got = g.eval(&[dx, dy], &at);
        assert!((got[0] - fd_x).abs() < 1e-8, "{} vs {fd_x}", got[0]);
        assert!((got[1] - fd_y).abs() < 1e-8, "{} vs {fd_y}", got[1]);
        let dxv = |g: &Graph, p: [f64; 2]| g.eval(&[dx], &p)[0];
        let fd_xy = (dxv(&g, [at[0], at[1] + h]) - dxv(&g, [at[0], at[1] - h])) / (2.0 * h);
        let got = g.eval(&[dxy], &at)[0];
        assert!((got - fd_xy).abs() < 1e-7, "{got} vs {fd_xy}");
    }

    /// The derivative rules of Φ, φ and Φ₂ against central differences of the graph's
    /// own values: f = Φ₂(x·y, Φ(y) − φ(x), ρ(x, y)) + φ(x)Φ(y) with a correlation
    /// ρ = 0.9 tanh(x − y) that depends on both inputs.
    #[test]
    fn gaussian_functions_differentiate() {
        let mut g = Graph::new();
        let (x, y) = (g.input(0), g.input(1));
        let h = g.mul(x, y);
        let py = g.unary(Unary::Ncdf, y);
        let dx = g.unary(Unary::Npdf, x);
        let k = g.sub(py, dx);
        let d = g.sub(x, y);
        let t = g.unary(Unary::Tanh, d);
        let c = g.constant(0.9);
        let r = g.mul(c, t);
        let b = g.bvn(h, k, r);
        let prod = g.mul(dx, py);
        let f = g.add(b, prod);
        let grads = [g.diff(f, 0), g.diff(f, 1)];
        let second = g.diff(grads[0], 1);
        let e = 1e-5;
        for at in [[0.7, 1.3], [-0.4, 0.2], [1.1, -0.9]] {
            let fv = |p: [f64; 2]| g.eval(&[f], &p)[0];
            let got = g.eval(&[grads[0], grads[1], second], &at);
            let fd_x = (fv([at[0] + e, at[1]]) - fv([at[0] - e, at[1]])) / (2.0 * e);
            let fd_y = (fv([at[0], at[1] + e]) - fv([at[0], at[1] - e])) / (2.0 * e);
            assert!((got[0] - fd_x).abs() < 1e-9, "{at:?}: {} vs {fd_x}", got[0]);
            assert!((got[1] - fd_y).abs() < 1e-9, "{at:?}: {} vs {fd_y}", got[1]);
            let gx = |p: [f64; 2]| g.eval(&[grads[0]], &p)[0];
            let fd_xy = (gx([at[0], at[1] + e]) - gx([at[0], at[1] - e])) / (2.0 * e);
            assert!(
                (got[2] - fd_xy).abs() < 1e-8,
                "{at:?}: {} vs {fd_xy}",
                got[2]
            );
        }
        // The value is the functions' value; constants fold.
        let v = g.eval(&[b], &[0.7, 1.3])[0];
        let (kk, rr) = (
            crate::numeric::gauss::ncdf(1.3) - crate::numeric::gauss::npdf(0.7),
            0.9 * (-0.6f64).tanh(),
        );
        assert_eq!(v, crate::numeric::gauss::bvn(0.7 * 1.3, kk, rr));
        let (p, q, z) = (g.constant(0.0), g.constant(0.0), g.constant(0.5));
        let folded = g.bvn(p, q, z);
        assert_eq!(
            g.value(folded),
            Some(crate::numeric::gauss::bvn(0.0, 0.0, 0.5))
        );
    }

    #[test]
    fn import_substitutes_inputs() {
        let mut t = Graph::new();
        let x = t.input(0);
        let sq = t.powi(x, 2);
        let mut g = Graph::new();
        let a = g.input(0);
        let b = g.input(1);
        let s = g.add(a, b);
        let r = g.import(&t, &[sq], &[s])[0];
        assert_eq!(g.eval(&[r], &[1.0, 2.0]), vec![9.0]);
    }

    #[test]
    fn cholesky_helpers_handle_zero_pivots() {
        let mut g = Graph::new();
        let a = g.input(0);
        let zero = g.constant(0.0);
        assert_eq!(g.binary(Binary::DivOrZero, a, zero), zero);
        assert_eq!(Unary::SqrtPos.apply(-1e-18), 0.0);
        assert_eq!(Binary::DivOrZero.apply(1.0, 0.0), 0.0);
    }
}
