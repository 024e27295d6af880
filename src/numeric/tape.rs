//! Flat numeric programs over batches of paths.
//!
//! A [`Tape`] is the compiled form of some outputs of a [`Graph`]: a list of
//! instructions over numbered registers, each register holding one value for each of
//! [`LANES`] paths. Running the tape executes every instruction as a loop over the lanes
//! (which the compiler vectorises), so the cost of interpreting an instruction is paid
//! once per [`LANES`] paths, not per path. Registers are allocated by liveness: a value
//! dead after its last use gives its register to a later one, so the working set of a
//! step stays in cache. An arithmetic node read once (and not an output) is computed
//! inside its reader's instruction ("fused": two operations in one pass over the lanes,
//! each rounded as alone, so the numbers do not change), and every output gets a
//! computed register of its own, so that a [`Stepper`] can step a state by alternating
//! the tape with its twin (the state's input and output registers exchanged), never
//! copying it. Register files ([`Registers`]) start on a cache line.
//!
//! Usage: [`Tape::registers`] makes a register file with the constants loaded; write the
//! inputs into their registers ([`Tape::input_reg`]), [`Tape::run`], read the outputs
//! ([`Tape::output_reg`]). [`Graph::eval`] is the reference the tape is tested against.

use super::graph::{powi, Binary, Graph, Id, Op, Unary};
use crate::numeric::rng::{in_avx2, Job};
use std::collections::HashMap;

/// Paths per register.
pub const LANES: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Instr {
    Un(Unary, u32, u32),
    Bin(Binary, u32, u32, u32),
    PowI(u32, u32, i32),
    /// `dst = Φ₂(h, k; ρ)`, registers `[dst, h, k, ρ]` (a rare operation: a scalar loop
    /// over [`super::gauss::bvn`]).
    Bvn([u32; 4]),
    /// `dst = counter_normal(stream, index)`, registers `[dst, stream, index]`
    /// ([`super::rng::counter_normal`], lane by lane).
    Normal([u32; 3]),
    /// `second(t, c)` (or `second(c, t)` when not `left`) with `t = first(a, b)`,
    /// registers `[dst, a, b, c]`: two instructions in one pass, `t` never stored. Each
    /// operation rounds as it would alone, so the results are bit for bit those of the
    /// two instructions.
    Fused(First, Second, bool, [u32; 4]),
    /// `dst = a`: an output that is an input or a constant, or another output's node,
    /// gets a register of its own.
    Copy(u32, u32),
    /// Runs row loop `k` of the tape ([`RowLoop`]).
    Rows(u32),
}

impl Instr {
    /// The instruction with every register renamed by `m`.
    fn renamed(self, m: impl Fn(u32) -> u32) -> Instr {
        match self {
            Instr::Un(u, d, a) => Instr::Un(u, m(d), m(a)),
            Instr::Bin(b, d, x, y) => Instr::Bin(b, m(d), m(x), m(y)),
            Instr::PowI(d, a, k) => Instr::PowI(m(d), m(a), k),
            Instr::Fused(f, s, left, r) => Instr::Fused(f, s, left, r.map(m)),
            Instr::Bvn(r) => Instr::Bvn(r.map(m)),
            Instr::Normal(r) => Instr::Normal(r.map(m)),
            Instr::Copy(d, a) => Instr::Copy(m(d), m(a)),
            Instr::Rows(k) => Instr::Rows(k),
        }
    }
}

/// The first operation of a fused instruction.
#[derive(Debug, Clone, Copy, PartialEq)]
enum First {
    Add,
    Sub,
    Mul,
    Div,
    /// `a²` (`b` is `a`).
    Square,
    /// `a³` (`b` is `a`).
    Cube,
}

impl First {
    fn of(op: Op) -> Option<First> {
        Some(match op {
            Op::Binary(Binary::Add, _, _) => First::Add,
            Op::Binary(Binary::Sub, _, _) => First::Sub,
            Op::Binary(Binary::Mul, _, _) => First::Mul,
            Op::Binary(Binary::Div, _, _) => First::Div,
            Op::PowI(_, 2) => First::Square,
            Op::PowI(_, 3) => First::Cube,
            _ => return None,
        })
    }
}

/// The second operation of a fused instruction.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Second {
    Add,
    Sub,
    Mul,
    Div,
}

impl Second {
    fn of(b: Binary) -> Option<Second> {
        Some(match b {
            Binary::Add => Second::Add,
            Binary::Sub => Second::Sub,
            Binary::Mul => Second::Mul,
            Binary::Div => Second::Div,
            _ => return None,
        })
    }
}

/// A register file: `f64`s whose first element sits on a 64-byte boundary (a cache
/// line), so that every register's vector loads and stores stay within cache lines.
/// It dereferences to the slice of its values.
#[derive(Debug)]
pub struct Registers {
    buf: Vec<f64>,
    off: usize,
    len: usize,
}

impl Registers {
    /// `len` zeros, aligned.
    pub fn zeros(len: usize) -> Registers {
        let buf = vec![0.0; len + 8];
        let off = buf.as_ptr().align_offset(64).min(8);
        Registers { buf, off, len }
    }
}

impl Clone for Registers {
    fn clone(&self) -> Registers {
        let mut r = Registers::zeros(self.len);
        r.copy_from_slice(self);
        r
    }
}

impl std::ops::Deref for Registers {
    type Target = [f64];
    fn deref(&self) -> &[f64] {
        &self.buf[self.off..self.off + self.len]
    }
}

impl std::ops::DerefMut for Registers {
    fn deref_mut(&mut self) -> &mut [f64] {
        &mut self.buf[self.off..self.off + self.len]
    }
}

/// A compiled program.
#[derive(Debug, Clone)]
pub struct Tape {
    regs: usize,
    consts: Vec<(u32, f64)>,
    inputs: Vec<Option<u32>>,
    outputs: Vec<u32>,
    code: Vec<Instr>,
    /// The row loops that [`Instr::Rows`] runs.
    loops: Vec<RowLoop>,
}

/// A loop over the data rows: the bodies of some row means as a program of their own,
/// run once per row on the tape's register file (in registers of its own), each body's
/// value added into its row mean's register, which is divided by the number of rows at
/// the end. Before the rows, the values the bodies read from outside are copied in; for
/// each row, its columns are broadcast over the lanes.
#[derive(Debug, Clone)]
struct RowLoop {
    rows: std::sync::Arc<ndarray::Array2<f64>>,
    code: Vec<Instr>,
    /// (outer register, loop register): the frontier values.
    load: Vec<(u32, u32)>,
    /// (column, loop register).
    cols: Vec<(usize, u32)>,
    /// The loop register of the row's index, if a body reads it.
    index: Option<u32>,
    /// (loop register of a body, outer register of its mean).
    outs: Vec<(u32, u32)>,
}

impl RowLoop {
    /// The loop with every register renamed by `m`.
    fn renamed(&self, m: impl Fn(u32) -> u32 + Copy) -> RowLoop {
        RowLoop {
            rows: self.rows.clone(),
            code: self.code.iter().map(|&i| i.renamed(m)).collect(),
            load: self.load.iter().map(|&(o, r)| (m(o), m(r))).collect(),
            cols: self.cols.iter().map(|&(c, r)| (c, m(r))).collect(),
            index: self.index.map(m),
            outs: self.outs.iter().map(|&(r, d)| (m(r), m(d))).collect(),
        }
    }

    #[inline(always)]
    fn run(&self, regs: &mut [f64]) {
        let lane = |r: u32| r as usize * LANES..(r as usize + 1) * LANES;
        for &(o, r) in &self.load {
            regs.copy_within(lane(o), r as usize * LANES);
        }
        for &(_, d) in &self.outs {
            regs[lane(d)].fill(0.0);
        }
        for (i, row) in self.rows.rows().into_iter().enumerate() {
            for &(c, r) in &self.cols {
                regs[lane(r)].fill(row[c]);
            }
            if let Some(r) = self.index {
                regs[lane(r)].fill(i as f64);
            }
            exec::<false>(&self.code, &[], regs);
            for &(r, d) in &self.outs {
                let (dst, x, _) = parts(regs, d as usize, r as usize, r as usize);
                for (o, &v) in dst.iter_mut().zip(x) {
                    *o += v;
                }
            }
        }
        let n = self.rows.nrows() as f64;
        for &(_, d) in &self.outs {
            for o in &mut regs[lane(d)] {
                *o /= n;
            }
        }
    }
}

impl Tape {
    /// Compiles the nodes `outputs` of `g`, which reads `n_inputs` inputs (inputs the
    /// outputs do not read get no register).
    ///
    /// Row means ([`Op::RowMean`]) are run as loops over the data rows: the row means
    /// that depend on no other row mean form one loop, those that depend on them the
    /// next, and so on; each loop is one instruction ([`RowLoop`]) that runs the bodies
    /// of its row means, compiled as a program of their own ([`Graph::row_program`]),
    /// once per row. So the nodes run in order of stage (how many loops they wait for),
    /// then of id. A node that varies with the row outside a row mean reads NaN for the
    /// row, as [`Graph::eval`] gives it no value.
    pub fn compile(g: &Graph, outputs: &[Id], n_inputs: usize) -> Tape {
        // What each node reads from outside: its children, or for a row mean its body's
        // frontier.
        let mut fronts: HashMap<Id, Vec<Id>> = HashMap::new();
        let mut live: Vec<Id> = Vec::new();
        let mut seen: HashMap<Id, ()> = HashMap::new();
        let mut stack: Vec<Id> = outputs.to_vec();
        while let Some(n) = stack.pop() {
            if seen.insert(n, ()).is_some() {
                continue;
            }
            live.push(n);
            match g.op(n) {
                Op::RowMean(b) => {
                    let f = g.frontier(b);
                    stack.extend(&f);
                    fronts.insert(n, f);
                }
                op => stack.extend(op.children()),
            }
        }
        live.sort_unstable();
        let reads = |n: Id| -> Vec<Id> {
            match fronts.get(&n) {
                Some(f) => f.clone(),
                None => g.op(n).children().collect(),
            }
        };
        // Stages: a row mean runs in the loop after those its frontier waits for.
        let mut stage: HashMap<Id, u32> = HashMap::new();
        for &n in &live {
            let after = reads(n).iter().map(|c| stage[c]).max().unwrap_or(0);
            let is_mean = matches!(g.op(n), Op::RowMean(_));
            stage.insert(n, after + u32::from(is_mean));
        }
        let is_mean = |n: Id| matches!(g.op(n), Op::RowMean(_));
        live.sort_by_key(|&n| (stage[&n], !is_mean(n), n));
        // The position of every node's instruction: a row mean's is its loop's.
        let mut pos_of: HashMap<Id, usize> = HashMap::new();
        let mut loop_at: HashMap<u32, usize> = HashMap::new();
        for (pos, &n) in live.iter().enumerate() {
            let p = if is_mean(n) {
                *loop_at.entry(stage[&n]).or_insert(pos)
            } else {
                pos
            };
            pos_of.insert(n, p);
        }
        let pinned: std::collections::HashSet<Id> = outputs.iter().copied().collect();
        // Readers of every node, counted with multiplicity.
        let mut uses: HashMap<Id, usize> = HashMap::new();
        for &n in &live {
            for a in reads(n) {
                *uses.entry(a).or_default() += 1;
            }
        }
        // Fusion: an arithmetic node read once, by an arithmetic binary node, and not an
        // output, is computed inside its reader's instruction (so its value never goes
        // through memory). `absorbed[m]` is the operand that `m` computes itself.
        let mut absorbed: HashMap<Id, Id> = HashMap::new();
        let mut inlined: std::collections::HashSet<Id> = std::collections::HashSet::new();
        for &m in &live {
            let Op::Binary(b, x, y) = g.op(m) else {
                continue;
            };
            if Second::of(b).is_none() {
                continue;
            }
            let fusable = |n: Id| {
                uses.get(&n) == Some(&1)
                    && !pinned.contains(&n)
                    && !absorbed.contains_key(&n)
                    && First::of(g.op(n)).is_some()
            };
            if let Some(n) = [x, y].into_iter().find(|&n| fusable(n)) {
                absorbed.insert(m, n);
                inlined.insert(n);
            }
        }
        // Last use of every node (position of the instruction that last reads it; an
        // inlined node's operands are read by its reader's instruction).
        let mut last_use: HashMap<Id, usize> = HashMap::new();
        for &n in &live {
            if inlined.contains(&n) {
                continue;
            }
            let mut r = reads(n);
            if let Some(&k) = absorbed.get(&n) {
                r.extend(g.op(k).children());
            }
            for a in r {
                let p = last_use.entry(a).or_insert(pos_of[&n]);
                *p = (*p).max(pos_of[&n]);
            }
        }
        let mut reg_of: HashMap<Id, u32> = HashMap::new();
        let mut regs: u32 = 0;
        let mut consts = Vec::new();
        let mut inputs = vec![None; n_inputs];
        let fixed = |op: Op| matches!(op, Op::Const(_) | Op::Input(_) | Op::Row(_) | Op::RowIndex);
        // Constants and inputs get fixed registers (and a row read outside a row mean,
        // NaN).
        for &n in &live {
            match g.op(n) {
                Op::Const(bits) => {
                    reg_of.insert(n, regs);
                    consts.push((regs, f64::from_bits(bits)));
                    regs += 1;
                }
                Op::Row(_) | Op::RowIndex => {
                    reg_of.insert(n, regs);
                    consts.push((regs, f64::NAN));
                    regs += 1;
                }
                Op::Input(i) => {
                    reg_of.insert(n, regs);
                    if (i as usize) < inputs.len() {
                        inputs[i as usize] = Some(regs);
                    }
                    regs += 1;
                }
                _ => {}
            }
        }
        let mut free: Vec<u32> = Vec::new();
        let mut code = Vec::new();
        // Row loops, their programs still with registers of their own (placed after the
        // outer registers at the end).
        let mut loops: Vec<(RowLoop, Tape)> = Vec::new();
        for (pos, &n) in live.iter().enumerate() {
            let op = g.op(n);
            if fixed(op) || inlined.contains(&n) {
                continue;
            }
            let mut operands: Vec<Id> = reads(n);
            if let Op::RowMean(_) = op {
                if pos_of[&n] != pos {
                    continue; // in the loop emitted at its stage's first row mean
                }
                let members: Vec<Id> = live[pos..]
                    .iter()
                    .copied()
                    .take_while(|&m| is_mean(m) && stage[&m] == stage[&n])
                    .collect();
                let mut outer: Vec<Id> = members.iter().flat_map(|m| fronts[m].clone()).collect();
                outer.sort_unstable();
                outer.dedup();
                let bodies: Vec<Id> = members
                    .iter()
                    .map(|&m| match g.op(m) {
                        Op::RowMean(b) => b,
                        _ => unreachable!("members are row means"),
                    })
                    .collect();
                let (sg, outs) = g.row_program(&bodies, &outer);
                let width = g.rows().map_or(0, |r| r.ncols());
                let sub = Tape::compile(&sg, &outs, outer.len() + width + 1);
                let mut dsts = Vec::with_capacity(members.len());
                for &m in &members {
                    let dst = free.pop().unwrap_or_else(|| {
                        regs += 1;
                        regs - 1
                    });
                    reg_of.insert(m, dst);
                    dsts.push(dst);
                }
                let lp = RowLoop {
                    rows: g
                        .rows()
                        .cloned()
                        .unwrap_or_else(|| std::sync::Arc::new(ndarray::Array2::zeros((0, 0)))),
                    code: Vec::new(),
                    load: outer
                        .iter()
                        .enumerate()
                        .filter_map(|(k, o)| sub.input_reg(k).map(|r| (reg_of[o], r as u32)))
                        .collect(),
                    cols: (0..width)
                        .filter_map(|c| sub.input_reg(outer.len() + c).map(|r| (c, r as u32)))
                        .collect(),
                    index: sub.input_reg(outer.len() + width).map(|r| r as u32),
                    outs: (0..members.len())
                        .map(|k| (sub.output_reg(k) as u32, dsts[k]))
                        .collect(),
                };
                code.push(Instr::Rows(loops.len() as u32));
                loops.push((lp, sub));
                operands = outer;
            } else {
                let dst = free.pop().unwrap_or_else(|| {
                    regs += 1;
                    regs - 1
                });
                reg_of.insert(n, dst);
                code.push(match (op, absorbed.get(&n)) {
                    (Op::Binary(b, x, y), Some(&k)) => {
                        let first = First::of(g.op(k)).expect("only arithmetic nodes are fused");
                        let kids: Vec<Id> = g.op(k).children().collect();
                        let (a, c) = (reg_of[&kids[0]], reg_of[kids.last().expect("an operand")]);
                        operands.extend(kids);
                        let second = Second::of(b).expect("only arithmetic nodes fuse");
                        let (left, other) = if x == k { (true, y) } else { (false, x) };
                        Instr::Fused(first, second, left, [dst, a, c, reg_of[&other]])
                    }
                    (Op::Unary(u, a), _) => Instr::Un(u, dst, reg_of[&a]),
                    (Op::PowI(a, k), _) => Instr::PowI(dst, reg_of[&a], k),
                    (Op::Bvn(h, k, r), _) => Instr::Bvn([dst, reg_of[&h], reg_of[&k], reg_of[&r]]),
                    (Op::Normal(s, i), _) => Instr::Normal([dst, reg_of[&s], reg_of[&i]]),
                    (Op::Binary(b, x, y), None) => Instr::Bin(b, dst, reg_of[&x], reg_of[&y]),
                    _ => unreachable!("constants, inputs, rows and row means were handled"),
                });
            }
            for a in operands {
                let kept = fixed(g.op(a)) || pinned.contains(&a) || inlined.contains(&a);
                if !kept && last_use.get(&a) == Some(&pos) {
                    let r = reg_of[&a];
                    if !free.contains(&r) {
                        free.push(r);
                    }
                }
            }
        }
        // Every output in a computed register of its own, never an input's or a
        // constant's: so a `Stepper` can exchange a state slot's input and output
        // registers.
        let mut out_regs: Vec<u32> = Vec::with_capacity(outputs.len());
        for o in outputs {
            let r = reg_of[o];
            let computed = !fixed(g.op(*o));
            if computed && !out_regs.contains(&r) {
                out_regs.push(r);
            } else {
                code.push(Instr::Copy(regs, r));
                out_regs.push(regs);
                regs += 1;
            }
        }
        // Each loop's program gets the registers after the outer ones.
        let loops = loops
            .into_iter()
            .map(|(mut lp, sub)| {
                let base = regs;
                let at = |r: u32| r + base;
                lp.code = sub.code.iter().map(|&i| i.renamed(at)).collect();
                lp.load = lp.load.iter().map(|&(o, r)| (o, at(r))).collect();
                lp.cols = lp.cols.iter().map(|&(c, r)| (c, at(r))).collect();
                lp.index = lp.index.map(at);
                lp.outs = lp.outs.iter().map(|&(r, d)| (at(r), d)).collect();
                consts.extend(sub.consts.iter().map(|&(r, v)| (at(r), v)));
                regs += sub.regs as u32;
                lp
            })
            .collect();
        Tape {
            regs: regs as usize,
            consts,
            inputs,
            outputs: out_regs,
            code,
            loops,
        }
    }

    /// A register file for this tape, constants loaded, everything else 0.
    pub fn registers(&self) -> Registers {
        let mut r = Registers::zeros(self.regs.max(1) * LANES);
        for &(reg, v) in &self.consts {
            r[reg as usize * LANES..(reg as usize + 1) * LANES].fill(v);
        }
        r
    }

    /// The register of input `i`, if the outputs read it.
    pub fn input_reg(&self, i: usize) -> Option<usize> {
        self.inputs.get(i).copied().flatten().map(|r| r as usize)
    }

    /// The register of output `i`.
    pub fn output_reg(&self, i: usize) -> usize {
        self.outputs[i] as usize
    }

    pub fn n_outputs(&self) -> usize {
        self.outputs.len()
    }

    /// The number of instructions.
    pub fn len(&self) -> usize {
        self.code.len()
    }

    pub fn is_empty(&self) -> bool {
        self.code.is_empty()
    }

    /// Whether every lane of the outputs `0..n` is finite: `0·v` is 0 for a finite `v`
    /// and NaN otherwise, summed in eight independent accumulators (so that it
    /// vectorises).
    #[inline(always)]
    pub fn outputs_finite(&self, regs: &[f64], n: usize) -> bool {
        let mut acc = [0.0f64; 8];
        for i in 0..n {
            let r = self.output_reg(i);
            for c in regs[r * LANES..(r + 1) * LANES].chunks_exact(8) {
                for (a, &v) in acc.iter_mut().zip(c) {
                    // `v * 0.0`: 0 for a finite v, NaN for ±∞ and NaN.
                    *a += v * 0.0;
                }
            }
        }
        acc.iter().sum::<f64>() == 0.0
    }

    /// The lanes of register `r`.
    pub fn lane<'a>(&self, regs: &'a [f64], r: usize) -> &'a [f64] {
        &regs[r * LANES..(r + 1) * LANES]
    }

    /// Runs the program on a register file from [`Tape::registers`] (compiled for AVX2
    /// where the CPU has it: the same arithmetic, four lanes per instruction).
    pub fn run(&self, regs: &mut [f64]) {
        struct Run<'a>(&'a Tape, &'a mut [f64]);
        impl Job for Run<'_> {
            type Out = ();
            #[inline(always)]
            fn run(self) {
                self.0.run_lanes(self.1)
            }
        }
        in_avx2(Run(self, regs))
    }

    #[inline(always)]
    fn run_lanes(&self, regs: &mut [f64]) {
        exec::<true>(&self.code, &self.loops, regs);
    }
}

/// Runs instructions, and with `LOOPS` the row loops they call (a loop's own program has
/// none and runs as `exec::<false>`). No closures: a closure would not inherit the AVX2
/// and FMA features of [`in_avx2`]'s caller, and its `mul_add` would call software FMA.
#[inline(always)]
fn exec<const LOOPS: bool>(code: &[Instr], loops: &[RowLoop], regs: &mut [f64]) {
    {
        for ins in code {
            match *ins {
                Instr::Un(u, d, a) => {
                    let (dst, x, _) = parts(regs, d as usize, a as usize, a as usize);
                    unary(u, dst, x);
                }
                Instr::PowI(d, a, k) => {
                    let (dst, x, _) = parts(regs, d as usize, a as usize, a as usize);
                    let (dst, x, _) = lanes(dst, x, x);
                    match k {
                        2 => {
                            for (o, &x) in dst.iter_mut().zip(x) {
                                *o = x * x;
                            }
                        }
                        3 => {
                            for (o, &x) in dst.iter_mut().zip(x) {
                                *o = x * x * x;
                            }
                        }
                        -1 => {
                            for (o, &x) in dst.iter_mut().zip(x) {
                                *o = 1.0 / x;
                            }
                        }
                        _ => {
                            for (o, &x) in dst.iter_mut().zip(x) {
                                *o = powi(x, k);
                            }
                        }
                    }
                }
                Instr::Bin(b, d, a, c) => {
                    let (dst, x, y) = parts(regs, d as usize, a as usize, c as usize);
                    binary(b, dst, x, y);
                }
                Instr::Fused(first, second, left, r) => fused(regs, first, second, left, r),
                Instr::Bvn(r) => {
                    let [d, h, k, c] = r.map(|x| x as usize);
                    debug_assert!(d != h && d != k && d != c);
                    let (dst, get) = split(regs, d);
                    let (h, k, c) = (get(h), get(k), get(c));
                    for (i, o) in dst.iter_mut().enumerate() {
                        *o = super::gauss::bvn(h[i], k[i], c[i]);
                    }
                }
                Instr::Normal(r) => {
                    let [d, s, i] = r.map(|x| x as usize);
                    debug_assert!(d != s && d != i);
                    let (dst, get) = split(regs, d);
                    super::rng::counter_normals(get(s), get(i), dst);
                }
                Instr::Copy(d, a) => {
                    let (dst, x, _) = parts(regs, d as usize, a as usize, a as usize);
                    dst.copy_from_slice(x);
                }
                Instr::Rows(k) => {
                    if LOOPS {
                        loops[k as usize].run(regs);
                    }
                }
            }
        }
    }
}

/// A state of `n` slots kept in a tape's first `n` inputs and advanced by the tape's
/// outputs `0..n`, double-buffered: two programs, the tape itself and its *twin*, the same
/// instructions with every state slot's input and output registers exchanged. Program `p`
/// reads the state from its input registers and writes the new state into its output
/// registers, which are program `1 − p`'s input registers; so the steps alternate between
/// the two and the state is never copied. (Exchanging two registers everywhere renames
/// them: the twin computes what the tape computes, bit for bit.) The caller keeps the
/// *parity*, which program reads the state now: 0 at the start, flipped by every step.
#[derive(Debug, Clone)]
pub struct Stepper {
    programs: [Tape; 2],
    n: usize,
}

impl Stepper {
    pub fn new(tape: &Tape, n: usize) -> Stepper {
        let mut map: Vec<u32> = (0..tape.regs as u32).collect();
        for i in 0..n {
            if let Some(a) = tape.inputs.get(i).copied().flatten() {
                let b = tape.outputs[i];
                // Outputs have computed registers of their own, never an input's
                // (`Tape::compile`), so each exchange is of two registers not yet moved.
                assert!(
                    map[a as usize] == a && map[b as usize] == b && a != b,
                    "state slot {i}: registers {a} and {b} are not a free pair"
                );
                map.swap(a as usize, b as usize);
            }
        }
        let m = |r: u32| map[r as usize];
        let twin = Tape {
            regs: tape.regs,
            consts: tape.consts.iter().map(|&(r, v)| (m(r), v)).collect(),
            inputs: tape.inputs.iter().map(|r| r.map(m)).collect(),
            outputs: tape.outputs.iter().map(|&r| m(r)).collect(),
            code: tape.code.iter().map(|&i| i.renamed(m)).collect(),
            loops: tape.loops.iter().map(|l| l.renamed(m)).collect(),
        };
        Stepper {
            programs: [tape.clone(), twin],
            n,
        }
    }

    /// The register that holds state slot `i` at `parity`: the reading program's input
    /// register (or, for a slot the tape never reads, its output register, the same in
    /// both programs).
    pub fn state_reg(&self, parity: usize, i: usize) -> usize {
        let p = &self.programs[parity];
        p.input_reg(i).unwrap_or_else(|| p.output_reg(i))
    }

    /// The register of input `i` that is not a state slot (the same in both programs).
    pub fn input_reg(&self, i: usize) -> Option<usize> {
        debug_assert!(i >= self.n, "a state slot's register depends on the parity");
        self.programs[0].input_reg(i)
    }

    /// One step: runs the program of `parity`, tells whether the new state is finite in
    /// every lane (when `check`; `true` otherwise), and flips `parity`. All of it runs as
    /// one call compiled for AVX2 where the CPU has it.
    pub fn step(&self, regs: &mut [f64], parity: &mut usize, check: bool) -> bool {
        struct Step<'a>(&'a Tape, &'a mut [f64], usize, bool);
        impl Job for Step<'_> {
            type Out = bool;
            #[inline(always)]
            fn run(self) -> bool {
                self.0.run_lanes(self.1);
                !self.3 || self.0.outputs_finite(self.1, self.2)
            }
        }
        let ok = in_avx2(Step(&self.programs[*parity], regs, self.n, check));
        *parity ^= 1;
        ok
    }
}

/// The destination register `d` (mutable) and a reader of any other register.
#[inline(always)]
fn split<'a>(regs: &'a mut [f64], d: usize) -> (&'a mut [f64], impl Fn(usize) -> &'a [f64]) {
    let (lo, rest) = regs.split_at_mut(d * LANES);
    let (dst, hi) = rest.split_at_mut(LANES);
    let (lo, hi): (&[f64], &[f64]) = (lo, hi);
    let get = move |r: usize| -> &'a [f64] {
        if r < d {
            &lo[r * LANES..(r + 1) * LANES]
        } else {
            let k = r - d - 1;
            &hi[k * LANES..(k + 1) * LANES]
        }
    };
    (dst, get)
}

/// The destination register (mutable) and two operand registers; the destination is
/// never an operand (the allocator frees an operand's register only after its reader).
#[inline(always)]
fn parts(regs: &mut [f64], d: usize, a: usize, b: usize) -> (&mut [f64], &[f64], &[f64]) {
    debug_assert!(d != a && d != b);
    let (dst, get) = split(regs, d);
    (dst, get(a), get(b))
}

type Lanes = [f64; LANES];

/// Runs a fused instruction: the operations are chosen outside the loop over the lanes,
/// so that each of the 48 combinations is its own vectorized loop.
#[inline(always)]
fn fused(regs: &mut [f64], first: First, second: Second, left: bool, r: [u32; 4]) {
    let [d, a, b, c] = r.map(|x| x as usize);
    debug_assert!(d != a && d != b && d != c);
    let (dst, get) = split(regs, d);
    let (dst, x, y) = lanes(dst, get(a), get(b));
    let z: &Lanes = get(c).try_into().expect("a register holds LANES lanes");
    #[inline(always)]
    fn run<F: Fn(f64, f64) -> f64, G: Fn(f64, f64) -> f64>(
        dst: &mut Lanes,
        x: &Lanes,
        y: &Lanes,
        z: &Lanes,
        f: F,
        g: G,
    ) {
        for i in 0..LANES {
            dst[i] = g(f(x[i], y[i]), z[i]);
        }
    }
    macro_rules! second {
        ($f:expr) => {
            match (second, left) {
                (Second::Add, true) => run(dst, x, y, z, $f, |t, c| t + c),
                (Second::Add, false) => run(dst, x, y, z, $f, |t, c| c + t),
                (Second::Sub, true) => run(dst, x, y, z, $f, |t, c| t - c),
                (Second::Sub, false) => run(dst, x, y, z, $f, |t, c| c - t),
                (Second::Mul, true) => run(dst, x, y, z, $f, |t, c| t * c),
                (Second::Mul, false) => run(dst, x, y, z, $f, |t, c| c * t),
                (Second::Div, true) => run(dst, x, y, z, $f, |t, c| t / c),
                (Second::Div, false) => run(dst, x, y, z, $f, |t, c| c / t),
            }
        };
    }
    match first {
        First::Add => second!(|a, b| a + b),
        First::Sub => second!(|a, b| a - b),
        First::Mul => second!(|a, b| a * b),
        First::Div => second!(|a, b| a / b),
        First::Square => second!(|a, _| a * a),
        First::Cube => second!(|a, _| a * a * a),
    }
}

/// The slices of [`parts`] as fixed-size lanes (plain loops over them vectorize).
#[inline(always)]
fn lanes<'a>(
    dst: &'a mut [f64],
    x: &'a [f64],
    y: &'a [f64],
) -> (&'a mut Lanes, &'a Lanes, &'a Lanes) {
    (
        dst.try_into().expect("a register holds LANES lanes"),
        x.try_into().expect("a register holds LANES lanes"),
        y.try_into().expect("a register holds LANES lanes"),
    )
}

#[inline(always)]
fn unary(u: Unary, dst: &mut [f64], x: &[f64]) {
    let (dst, x, _) = lanes(dst, x, x);
    match u {
        Unary::Neg => {
            for i in 0..LANES {
                dst[i] = -x[i];
            }
        }
        Unary::Sqrt => {
            for i in 0..LANES {
                dst[i] = x[i].sqrt();
            }
        }
        // The kinks of sign, relu, min, max and clip: plain loops that vectorize (NaN
        // maps to 0 under sign here, as `Unary::apply` gives; |NaN| is NaN).
        Unary::Abs => {
            for i in 0..LANES {
                dst[i] = x[i].abs();
            }
        }
        Unary::Sign => {
            for i in 0..LANES {
                dst[i] = f64::from(u8::from(x[i] > 0.0)) - f64::from(u8::from(x[i] < 0.0));
            }
        }
        Unary::Ncdf => super::vmath::lanes(dst, x, super::vmath::ncdf),
        Unary::Npdf => super::vmath::lanes(dst, x, super::vmath::npdf),
        Unary::Exp => super::vmath::lanes(dst, x, super::vmath::exp),
        Unary::Log => super::vmath::lanes(dst, x, super::vmath::log),
        Unary::Sigmoid => super::vmath::lanes(dst, x, super::vmath::sigmoid),
        Unary::Softplus => super::vmath::lanes(dst, x, super::vmath::softplus),
        _ => {
            for i in 0..LANES {
                dst[i] = u.apply(x[i]);
            }
        }
    }
}

#[inline(always)]
fn binary(b: Binary, dst: &mut [f64], x: &[f64], y: &[f64]) {
    let (dst, x, y) = lanes(dst, x, y);
    match b {
        Binary::Add => {
            for i in 0..LANES {
                dst[i] = x[i] + y[i];
            }
        }
        Binary::Sub => {
            for i in 0..LANES {
                dst[i] = x[i] - y[i];
            }
        }
        Binary::Mul => {
            for i in 0..LANES {
                dst[i] = x[i] * y[i];
            }
        }
        Binary::Div => {
            for i in 0..LANES {
                dst[i] = x[i] / y[i];
            }
        }
        _ => {
            for i in 0..LANES {
                dst[i] = b.apply(x[i], y[i]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A random expression graph over `n` inputs, built from a fixed LCG.
    fn random_graph(seed: u64, n: u32, size: usize) -> (Graph, Vec<Id>) {
        random_graph_of(seed, n, size, 9)
    }

    /// [`random_graph`] from its first `kinds` kinds of node (6: arithmetic only).
    fn random_graph_of(seed: u64, n: u32, size: usize, kinds: usize) -> (Graph, Vec<Id>) {
        let mut s = seed;
        let mut next = move || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 33) as usize
        };
        let mut g = Graph::new();
        let mut pool: Vec<Id> = (0..n).map(|i| g.input(i)).collect();
        pool.push(g.constant(0.5));
        pool.push(g.constant(-1.25));
        for _ in 0..size {
            let a = pool[next() % pool.len()];
            let b = pool[next() % pool.len()];
            let node = match next() % kinds {
                0 => g.add(a, b),
                1 => g.sub(a, b),
                2 => g.mul(a, b),
                3 => {
                    let one = g.constant(1.0);
                    let sq = g.powi(b, 2);
                    let den = g.add(one, sq);
                    g.div(a, den)
                }
                4 => g.powi(a, 3),
                5 => g.unary(Unary::Tanh, a),
                6 => g.unary(Unary::Sin, a),
                7 => {
                    let sq = g.powi(a, 2);
                    g.unary(Unary::Sqrt, sq)
                }
                _ => g.unary(Unary::Softplus, a),
            };
            pool.push(node);
        }
        let outs = pool[pool.len() - 5..].to_vec();
        (g, outs)
    }

    /// Compiles `outs`, runs the tape on `point(lane)` in every lane, and checks every
    /// output against the reference evaluation with `agree(got, want)`.
    fn check_against_reference(
        g: &Graph,
        outs: &[Id],
        point: impl Fn(usize) -> [f64; 3],
        agree: impl Fn(f64, f64) -> bool,
        seed: u64,
    ) -> Tape {
        let tape = Tape::compile(g, outs, 3);
        let mut regs = tape.registers();
        for i in 0..3 {
            if let Some(r) = tape.input_reg(i) {
                for lane in 0..LANES {
                    regs[r * LANES + lane] = point(lane)[i];
                }
            }
        }
        tape.run(&mut regs);
        for lane in 0..LANES {
            let want = g.eval(outs, &point(lane));
            for (k, w) in want.iter().enumerate() {
                let got = tape.lane(&regs, tape.output_reg(k))[lane];
                assert!(
                    agree(got, *w),
                    "seed {seed} lane {lane} output {k}: {got} vs {w}"
                );
            }
        }
        tape
    }

    #[test]
    fn tapes_agree_with_the_reference_evaluation() {
        for seed in 0..20 {
            let (g, outs) = random_graph(seed, 3, 60);
            let point = |lane: usize| {
                [
                    (lane as f64 * 0.37).sin(),
                    (lane as f64 * 0.11).cos(),
                    0.1 * lane as f64 - 3.0,
                ]
            };
            let close = |got: f64, w: f64| got == w || (got - w).abs() <= 1e-12 * w.abs().max(1.0);
            check_against_reference(&g, &outs, point, close, seed);
        }
    }

    /// A graph with row means over 7 rows of 2 columns: means of random bodies over x and
    /// a row, means whose bodies read other means (a centred moment), and outer nodes
    /// that mix them. The tape runs loops over the rows; [`Graph::eval`] sums each mean
    /// on its own, node by node. Both add the rows in order and divide by n, and the
    /// arithmetic rounds as alone, so they agree bit for bit.
    #[test]
    fn row_means_run_as_loops_and_agree_with_the_reference_bit_for_bit() {
        let rows = ndarray::Array2::from_shape_fn((7, 2), |(i, c)| {
            (i as f64 * 0.7 + c as f64 * 1.3).sin() * (1.0 + i as f64)
        });
        for seed in 0..12 {
            let (mut g, outs) = random_graph_of(seed, 3, 30, 5);
            g.set_rows(std::sync::Arc::new(rows.clone()));
            let (r0, r1) = (g.row(0), g.row(1));
            // Bodies: each random output times a column plus the other column squared.
            let mut means = Vec::new();
            for (k, &o) in outs.iter().enumerate() {
                let col = if k % 2 == 0 { r0 } else { r1 };
                let p = g.mul(o, col);
                let sq = g.powi(if k % 2 == 0 { r1 } else { r0 }, 2);
                let body = g.add(p, sq);
                means.push(g.row_mean(body));
            }
            // Second stage: the mean of (body − its mean)², then an outer mix.
            let (o0, m0) = (outs[0], means[0]);
            let body0 = {
                let p = g.mul(o0, r0);
                let sq = g.powi(r1, 2);
                g.add(p, sq)
            };
            let dev = g.sub(body0, m0);
            let dev2 = g.powi(dev, 2);
            let var = g.row_mean(dev2);
            let mix = g.mul(var, means[1]);
            let last = g.add(mix, outs[2]);
            let mut all = means.clone();
            all.extend([var, last, outs[3]]);
            let point = |lane: usize| [0.9 - 0.013 * lane as f64, 0.5, (lane as f64).sqrt()];
            let same =
                |got: f64, w: f64| got.to_bits() == w.to_bits() || (got.is_nan() && w.is_nan());
            let tape = check_against_reference(&g, &all, point, same, seed);
            assert_eq!(tape.loops.len(), 2, "two stages of row means");
            assert_eq!(
                tape.loops[0].outs.len(),
                means.len(),
                "one loop for the first stage"
            );
        }
    }

    /// Normals drawn per row ([`Op::Normal`] of a stream and the row's index)
    /// inside row means, in two stages: the tape agrees with the reference bit for bit,
    /// and both with the sum written out here from `counter_normal` itself; a draw's
    /// derivative is zero; outside a mean, the row's index has no value.
    #[test]
    fn normals_per_row_agree_with_the_reference_and_the_sum_by_hand() {
        let rows = ndarray::Array2::from_shape_fn((9, 1), |(i, _)| (i as f64 * 0.37).cos());
        let mut g = Graph::new();
        g.set_rows(std::sync::Arc::new(rows.clone()));
        let (x, s0, s1) = (g.input(0), g.input(1), g.input(2));
        let index = g.row_index();
        let (z0, z1) = (g.normal(s0, index), g.normal(s1, index));
        let r = g.row(0);
        let rx = g.mul(r, x);
        let a = g.add(rx, z0);
        let body = g.mul(a, z1);
        let mean = g.row_mean(body);
        let dev = g.sub(body, mean);
        let dz = g.mul(dev, z0);
        let second = g.row_mean(dz);
        assert_eq!(g.diff(z0, 0), g.constant(0.0));
        // Streams of both signs (a negative one flips the draws), and points.
        let point = |lane: usize| {
            let key = crate::numeric::rng::row_key(11, (lane / 3) as u64);
            let s = crate::numeric::rng::row_stream(key, (lane % 7) as u64);
            let s = if lane % 5 == 0 { -s } else { s };
            [
                0.3 + 0.01 * lane as f64,
                s,
                crate::numeric::rng::row_stream(key, 99),
            ]
        };
        let same = |got: f64, w: f64| got.to_bits() == w.to_bits();
        let tape = check_against_reference(
            &g,
            &[mean, second, index],
            point,
            |got, w| same(got, w) || (got.is_nan() && w.is_nan()),
            0,
        );
        assert_eq!(tape.loops.len(), 2);
        let n = rows.nrows() as f64;
        for lane in [0, 1, 5, 77, 127] {
            let [x, s0, s1] = point(lane);
            let zz = |s: f64, i: usize| crate::numeric::rng::counter_normal(s, i as f64);
            let bodies: Vec<f64> = (0..rows.nrows())
                .map(|i| (rows[[i, 0]] * x + zz(s0, i)) * zz(s1, i))
                .collect();
            let m = bodies.iter().sum::<f64>() / n;
            let want = bodies
                .iter()
                .enumerate()
                .map(|(i, b)| (b - m) * zz(s0, i))
                .sum::<f64>()
                / n;
            let got = g.eval(&[mean, second], &point(lane));
            assert!(
                (got[0] - m).abs() <= 1e-15 * m.abs().max(1.0),
                "lane {lane}"
            );
            assert!(
                (got[1] - want).abs() <= 1e-15 * want.abs().max(1.0),
                "lane {lane}"
            );
        }
    }

    /// The mean of a body that does not vary with the row is the body; derivatives go
    /// inside the mean; a row read outside a mean has no value.
    #[test]
    fn row_means_fold_differentiate_and_stay_inside() {
        let mut g = Graph::new();
        g.set_rows(std::sync::Arc::new(
            ndarray::Array2::from_shape_vec((3, 1), vec![1.0, 2.0, 4.0]).unwrap(),
        ));
        let x = g.input(0);
        let sq = g.powi(x, 2);
        assert_eq!(g.row_mean(sq), sq);
        let a = g.row(0);
        let ax = g.mul(a, x);
        let body = g.unary(Unary::Exp, ax);
        let m = g.row_mean(body);
        let dm = g.diff(m, 0);
        assert!(matches!(g.op(dm), Op::RowMean(_)));
        let x0 = 0.3f64;
        let want: f64 = [1.0f64, 2.0, 4.0]
            .iter()
            .map(|a| a * (a * x0).exp())
            .sum::<f64>()
            / 3.0;
        let got = g.eval(&[dm], &[x0])[0];
        assert!((got - want).abs() < 1e-14 * want, "{got} vs {want}");
        assert!(g.eval(&[body], &[x0])[0].is_nan());
        let tape = Tape::compile(&g, &[dm, body], 1);
        let mut regs = tape.registers();
        regs[tape.input_reg(0).unwrap() * LANES..][..LANES].fill(x0);
        tape.run(&mut regs);
        assert_eq!(tape.lane(&regs, tape.output_reg(0))[5], got);
        assert!(tape.lane(&regs, tape.output_reg(1))[5].is_nan());
    }

    /// A step whose state reads a row mean (full-batch gradient descent on a finite
    /// sum) is double-buffered like any other: the loop's registers follow the swap.
    #[test]
    fn steps_through_row_means_swap_buffers() {
        let mut g = Graph::new();
        g.set_rows(std::sync::Arc::new(
            ndarray::Array2::from_shape_vec((4, 1), vec![-1.0, 0.5, 2.0, 3.5]).unwrap(),
        ));
        // f = mean (x − a)² / 2, x ← x − 0.25 f'(x) = x − 0.25 (x − ā).
        let (x, a) = (g.input(0), g.row(0));
        let r = g.sub(x, a);
        let grad = g.row_mean(r);
        let lr = g.constant(0.25);
        let step = g.mul(lr, grad);
        let next = g.sub(x, step);
        let tape = Tape::compile(&g, &[next], 1);
        let stepper = Stepper::new(&tape, 1);
        let mut regs = tape.registers();
        regs[tape.input_reg(0).unwrap() * LANES..][..LANES].fill(10.0);
        let (mut parity, mut want) = (0, 10.0f64);
        for _ in 0..5 {
            stepper.step(&mut regs, &mut parity, true);
            want = g.eval(&[next], &[want])[0];
            assert_eq!(regs[stepper.state_reg(parity, 0) * LANES + 3], want);
        }
        assert!(
            (want - 1.25).abs() < 3.0,
            "moves toward the mean 1.25: {want}"
        );
    }

    /// Fused instructions round each operation as the reference does: on arithmetic
    /// alone the tape gives the reference's numbers bit for bit.
    #[test]
    fn fused_instructions_keep_every_rounding() {
        let mut fused = 0;
        for seed in 0..20 {
            let (g, outs) = random_graph_of(seed, 3, 40, 5);
            let point = |lane: usize| [0.9 - 0.013 * lane as f64, 0.5, (lane as f64).sqrt()];
            let same =
                |got: f64, w: f64| got.to_bits() == w.to_bits() || (got.is_nan() && w.is_nan());
            let tape = check_against_reference(&g, &outs, point, same, seed);
            fused += tape
                .code
                .iter()
                .filter(|i| matches!(i, Instr::Fused(..)))
                .count();
        }
        assert!(fused > 100, "only {fused} fused instructions");
    }

    /// Outputs that are inputs, constants or the same node twice get registers of their
    /// own, so a double-buffered step that swaps two states (and keeps a constant) is
    /// exact; the state moves between the two programs' input registers.
    #[test]
    fn steps_swap_buffers_with_outputs_that_are_inputs() {
        let mut g = Graph::new();
        let (x, y) = (g.input(0), g.input(1));
        let two = g.constant(2.0);
        let s = g.add(x, y);
        let tape = Tape::compile(&g, &[y, x, two, s, s], 4);
        let stepper = Stepper::new(&tape, 2);
        let mut regs = tape.registers();
        for (i, v) in [1.0, 2.0, 5.0, 7.0].into_iter().enumerate() {
            if let Some(r) = tape.input_reg(i) {
                regs[r * LANES..(r + 1) * LANES].fill(v);
            }
        }
        let mut parity = 0;
        let state = |regs: &[f64], p: usize| {
            [0, 1].map(|i| regs[stepper.state_reg(p, i) * LANES + LANES - 1])
        };
        assert!(stepper.step(&mut regs, &mut parity, true));
        assert_eq!((parity, state(&regs, parity)), (1, [2.0, 1.0]));
        // The state's registers moved: they are the tape's outputs 0 and 1 now.
        for i in 0..2 {
            assert_eq!(stepper.state_reg(1, i), tape.output_reg(i));
        }
        let outs: Vec<f64> = (2..5).map(|k| regs[tape.output_reg(k) * LANES]).collect();
        assert_eq!(outs, [2.0, 3.0, 3.0]);
        assert!(stepper.step(&mut regs, &mut parity, true));
        assert_eq!((parity, state(&regs, parity)), (0, [1.0, 2.0]));
        assert!(stepper.step(&mut regs, &mut parity, true));
        assert_eq!(state(&regs, parity), [2.0, 1.0]);
        let outs: Vec<usize> = (0..5).map(|k| tape.output_reg(k)).collect();
        let mut distinct = outs.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), 5, "output registers {outs:?}");
        // A NaN in either buffer is seen, and only when asked for.
        regs[stepper.state_reg(parity, 0) * LANES + 3] = f64::NAN;
        assert!(stepper.step(&mut regs, &mut parity, false));
        assert!(!stepper.step(&mut regs, &mut parity, true));
    }

    /// A double-buffered run of many steps gives the tape's values bit for bit, and so
    /// does every step of a copying reference (run, then copy the outputs back).
    #[test]
    fn double_buffered_steps_match_copied_steps() {
        for seed in 0..20 {
            let n = 3;
            let (g, outs) = random_graph(seed, 5, 60);
            let tape = Tape::compile(&g, &outs[..n.min(outs.len())], 5);
            let n = tape.n_outputs();
            let stepper = Stepper::new(&tape, n);
            let mut a = tape.registers();
            for i in 0..5 {
                if let Some(r) = tape.input_reg(i) {
                    for (l, v) in a[r * LANES..(r + 1) * LANES].iter_mut().enumerate() {
                        *v = 0.3 + 0.01 * l as f64 + 0.1 * i as f64;
                    }
                }
            }
            let mut b = a.clone();
            let mut parity = 0;
            for _ in 0..7 {
                stepper.step(&mut a, &mut parity, true);
                tape.run(&mut b);
                for i in 0..n {
                    if let Some(r) = tape.input_reg(i) {
                        let o = tape.output_reg(i);
                        let v = b[o * LANES..(o + 1) * LANES].to_vec();
                        b[r * LANES..(r + 1) * LANES].copy_from_slice(&v);
                    }
                }
                for i in 0..n {
                    let (ra, rb) = (stepper.state_reg(parity, i), tape.output_reg(i));
                    for l in 0..LANES {
                        let (x, y) = (a[ra * LANES + l], b[rb * LANES + l]);
                        assert!(
                            x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()),
                            "seed {seed}, slot {i}, lane {l}: {x} vs {y}"
                        );
                    }
                }
            }
        }
    }

    /// Φ, φ and Φ₂ on a tape give the functions' numbers, also in a stepper's twin.
    #[test]
    fn tapes_evaluate_gaussian_functions() {
        use crate::numeric::gauss::bvn;
        use crate::numeric::vmath::{ncdf, npdf};
        let mut g = Graph::new();
        let (x, y, r) = (g.input(0), g.input(1), g.input(2));
        let px = g.unary(Unary::Ncdf, x);
        let dy = g.unary(Unary::Npdf, y);
        let b = g.bvn(x, y, r);
        let s = g.add(b, px);
        let outs = [px, dy, b, s];
        let point = |lane: usize| {
            let l = lane as f64;
            [0.3 * l - 19.0, 4.0 - 0.05 * l, (0.1 * l).sin()]
        };
        let same = |got: f64, w: f64| got.to_bits() == w.to_bits();
        let tape = check_against_reference(&g, &outs, point, same, 0);
        let mut regs = tape.registers();
        for i in 0..3 {
            let reg = tape.input_reg(i).expect("every input is read");
            for lane in 0..LANES {
                regs[reg * LANES + lane] = point(lane)[i];
            }
        }
        tape.run(&mut regs);
        for lane in 0..LANES {
            let [x, y, r] = point(lane);
            let got: Vec<f64> = (0..4)
                .map(|k| tape.lane(&regs, tape.output_reg(k))[lane])
                .collect();
            assert_eq!(
                got,
                [ncdf(x), npdf(y), bvn(x, y, r), bvn(x, y, r) + ncdf(x)]
            );
        }
        // In a stepper, the state (x, y, r) ↦ (Φ(x), φ(y), Φ₂(x, y; r)) twice.
        let step = Tape::compile(&g, &[px, dy, b], 3);
        let stepper = Stepper::new(&step, 3);
        let mut regs = step.registers();
        for (i, v) in [0.4, -0.2, 0.5].into_iter().enumerate() {
            let reg = stepper.state_reg(0, i);
            regs[reg * LANES..(reg + 1) * LANES].fill(v);
        }
        let mut parity = 0;
        stepper.step(&mut regs, &mut parity, true);
        stepper.step(&mut regs, &mut parity, true);
        let once = [ncdf(0.4), npdf(-0.2), bvn(0.4, -0.2, 0.5)];
        let twice = [ncdf(once[0]), npdf(once[1]), bvn(once[0], once[1], once[2])];
        let got: Vec<f64> = (0..3)
            .map(|i| regs[stepper.state_reg(parity, i) * LANES])
            .collect();
        assert_eq!(got, twice);
    }

    #[test]
    fn registers_are_reused() {
        let (g, outs) = random_graph(7, 3, 400);
        let tape = Tape::compile(&g, &outs, 3);
        assert!(
            tape.regs < tape.len(),
            "{} registers for {} instructions",
            tape.regs,
            tape.len()
        );
    }
}
