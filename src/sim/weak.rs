//! Weak error by simulation: the optimizer and its SMEs side by side, path by path.
//!
//! For one value η of the small parameter, `N = round(T/τ)` optimizer steps are run on
//! every path, and for each SME the SDE over the same time `Nτ`, by Euler–Maruyama with
//! `K` substeps per optimizer step. The SDE's own bias is removed by Richardson
//! extrapolation: the same Brownian path is also integrated with `K/2` and `K/4`
//! substeps (pairs and quadruples of increments summed), `R = 2 X^K − X^{K/2}` has
//! bias `O((τ/K)²)`, and `(R − R')/3` with `R' = 2 X^{K/2} − X^{K/4}` estimates that
//! bias; it is reported beside the weak error it must be far below.
//!
//! Coupling: the optimizer's standard normals `z` also drive the SDE. At the start the
//! optimizer's noise enters a step as `J z` (`J` = ∂step/∂z), the SDE's as `L ΔW` with
//! `L Lᵀ = D`; `C = L⁺J/√τ` maps `z` to the Brownian increment that matches it. `C` is
//! made a contraction (singular values capped at 1) and completed by fresh normals, so
//! `ΔW = √τ (C z + R y)` is exactly `N(0, τ I)` whatever `C` is: the coupling changes
//! variances, never laws. The increments of the substeps are the Brownian bridge
//! through `ΔW`.
//!
//! Paths run in blocks of [`LANES`]; block `b` draws from stream `b` of the seed. Within
//! a block the samples are summed in floating point; across blocks the sums are added
//! exactly ([`Sums`], [`crate::sim::sum::ExactSum`]) and rounded once, so the numbers
//! depend neither on the thread count nor on how the blocks are grouped: shards of a run
//! ([`run_blocks`] over a range of blocks, [`Partial::merge`]) give the single run's
//! numbers bit for bit.
//!
//! Antithetic pairs ([`Sampling::antithetic`]): lane `2j + 1` of a block takes the
//! negatives of every normal lane `2j` draws, optimizer's and SDE's alike, and the pair's
//! mean is one sample. Each lane keeps its law, so the estimators stay unbiased; the part
//! of `φ(x_N) − φ(X_N)` odd in the noise cancels within a pair. That part is what a fast
//! state's end fluctuation `C(u_N − ū)` puts in a path's error (O(η) per path against an
//! O(η²) mean), so pairs resolve an order-2 slope with far fewer paths there.

#![allow(
    clippy::needless_range_loop,
    reason = "index loops over matrix rows and columns read as the formulas do"
)]

use super::compile::{Layout, SdeProgram, StepProgram};
use super::sum::ExactSum;

use crate::numeric::exact::{eigh, from_rows};

/// A dense matrix, row by row.
type M = Vec<Vec<f64>>;
use crate::numeric::graph::Graph;
use crate::numeric::rng::{in_avx2, Job, Stream, Streams};
use crate::numeric::tape::{Registers, Stepper, Tape, LANES};
use rayon::prelude::*;

/// Whether the step's outputs read a kink (`sign` or `|·|`, which `relu`, `min`, `max`
/// and `clip` are built from).
fn has_kink(g: &Graph, outputs: &[crate::numeric::graph::Id]) -> bool {
    use crate::numeric::graph::{Op, Unary};
    let mut seen = vec![false; g.len()];
    let mut stack: Vec<crate::numeric::graph::Id> = outputs.to_vec();
    while let Some(n) = stack.pop() {
        if std::mem::replace(&mut seen[n as usize], true) {
            continue;
        }
        let op = g.op(n);
        if matches!(op, Op::Unary(Unary::Sign | Unary::Abs, _)) {
            return true;
        }
        stack.extend(op.children());
    }
    false
}

/// Everything one η needs, compiled.
pub struct Plan {
    pub eta: f64,
    pub steps: usize,
    pub tau: f64,
    pub layout: Layout,
    pub step: StepProgram,
    /// Per SME order that is an SDE at this step size: the program and its coupling.
    pub sdes: Vec<(u32, SdeProgram, Coupling)>,
    /// Per SME order asked (in order): why it is no SDE at this step size (its
    /// diffusion matrix not positive semidefinite), or `None` when it is in `sdes`.
    /// Empty means every order is in `sdes`.
    pub refused: Vec<Option<String>>,
    pub observables: Tape,
    /// The start state (layout slots; the clock at `counter0 τ`).
    pub start: Vec<f64>,
    /// The step counter of the first step.
    pub counter0: u64,
    /// Substeps per optimizer step (a multiple of 4).
    pub substeps: usize,
}

/// How the optimizer's normals drive one SDE's Brownian motion: `w = C z + R y`.
#[derive(Debug, Clone)]
pub struct Coupling {
    /// `n × kz`.
    pub c: M,
    /// `n × n`, or empty when `C` already has orthonormal rows where it matters.
    pub r: M,
}

/// The coupling of an SDE to the optimizer at the start state.
///
/// `fast`: the slots of the rule's eliminated states. A slow state's sensitivity to this
/// step's normals is then taken over the steps that follow, where the fast state carries
/// them: `J_x + C J_u` with `C = A (I − M)⁻¹`, `A = ∂x'/∂u` and `M = ∂u'/∂u`, which is
/// the sensitivity of the state `Y = x + C u` that the elimination follows
/// (`derive::fast`). Without it the SDE's noise would be coupled to a fraction of the
/// optimizer's (`1 − μ` for heavy ball).
pub fn coupling(
    step: &StepProgram,
    sde: &SdeProgram,
    start: &[f64],
    tau: f64,
    fast: &[(usize, usize)],
) -> Coupling {
    let n = sde.n;
    // Noise from the rows reads no increments: nothing to couple.
    if sde.rows.is_some() {
        return Coupling {
            c: vec![Vec::new(); n],
            r: Vec::new(),
        };
    }
    // Minibatch noise draws no normals: the SDE gets its own (no coupling).
    let kz = if step.minibatch.is_some() {
        0
    } else {
        step.samples * step.draws
    };
    // J = ∂ step / ∂ z at z = 0, counter 0.
    let mut g: Graph = step.graph.clone();
    let mut inputs = vec![0.0; step.n_inputs()];
    inputs[..step.n_state].copy_from_slice(&start[..step.n_state]);
    let mut j: M = vec![vec![0.0; kz]; n];
    if has_kink(&g, &step.outputs) {
        // A step with a kink in the noise (sign, |·|, clip): its derivative at z = 0 is
        // 0 or blind to the kink, so the coupling takes the average slope instead,
        // E[∂step/∂z] = E[step(z) zᵀ] (Stein), by antithetic sampling at a fixed seed.
        // Any C keeps the SDE's law exact (below); a better one only reduces variance.
        let mut rng = Streams::new(0x57E1_C0DE).stream(0);
        let pairs = 4096;
        let mut z = vec![0.0; kz];
        let mut plus = inputs.clone();
        let mut minus = inputs.clone();
        for _ in 0..pairs {
            rng.fill_normal(&mut z);
            for (col, &w) in z.iter().enumerate() {
                let (s, q) = (col / step.draws.max(1), col % step.draws.max(1));
                plus[step.normal_input(s, q)] = w;
                minus[step.normal_input(s, q)] = -w;
            }
            let (up, down) = (g.eval(&step.outputs, &plus), g.eval(&step.outputs, &minus));
            for row in 0..n.min(up.len()) {
                let half = 0.5 * (up[row] - down[row]) / pairs as f64;
                for (col, &w) in z.iter().enumerate() {
                    j[row][col] += half * w;
                }
            }
        }
    } else {
        for col in 0..kz {
            let (s, q) = (col / step.draws.max(1), col % step.draws.max(1));
            let ders = g.diff_all(&step.outputs, step.normal_input(s, q) as u32);
            let vals = g.eval(&ders, &inputs);
            for (row, v) in vals.into_iter().enumerate() {
                j[row][col] = v;
            }
        }
    }
    carry_fast(&mut g, step, &inputs, fast, &mut j);
    let l_flat = sde.graph.eval(&sde.factor, start);
    let l: M = (0..n)
        .map(|i| l_flat[i * n..(i + 1) * n].to_vec())
        .collect();
    // C = (LᵀL)⁺ Lᵀ J / √τ.
    let ltl: M = (0..n)
        .map(|a| {
            (0..n)
                .map(|b| (0..n).map(|i| l[i][a] * l[i][b]).sum())
                .collect()
        })
        .collect();
    let (lam, v) = eigh(&from_rows(&ltl));
    let top = lam.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    let pinv: M = (0..n)
        .map(|a| {
            (0..n)
                .map(|b| {
                    (0..n)
                        .filter(|&k| lam[k] > 1e-12 * top && top > 0.0)
                        .map(|k| v[[a, k]] * v[[b, k]] / lam[k])
                        .sum()
                })
                .collect()
        })
        .collect();
    let ltj: M = (0..n)
        .map(|a| {
            (0..kz)
                .map(|c| (0..n).map(|i| l[i][a] * j[i][c]).sum())
                .collect()
        })
        .collect();
    let scale = 1.0 / tau.sqrt();
    let c: M = (0..n)
        .map(|a| {
            (0..kz)
                .map(|q| scale * (0..n).map(|b| pinv[a][b] * ltj[b][q]).sum::<f64>())
                .collect()
        })
        .collect();
    // Contraction and completion: C C ᵀ = U S² Uᵀ.
    let cct: M = (0..n)
        .map(|a| {
            (0..n)
                .map(|b| (0..kz).map(|q| c[a][q] * c[b][q]).sum())
                .collect()
        })
        .collect();
    let (s2, u) = eigh(&from_rows(&cct));
    let shrink: Vec<f64> = s2
        .iter()
        .map(|&x| if x > 1.0 { 1.0 / x.sqrt() } else { 1.0 })
        .collect();
    let rest: Vec<f64> = s2
        .iter()
        .map(|&x| (1.0 - x.clamp(0.0, 1.0)).sqrt())
        .collect();
    let sym = |w: &[f64]| -> M {
        (0..n)
            .map(|a| {
                (0..n)
                    .map(|b| (0..n).map(|k| u[[a, k]] * w[k] * u[[b, k]]).sum())
                    .collect()
            })
            .collect()
    };
    let p = sym(&shrink);
    let c2: M = (0..n)
        .map(|a| {
            (0..kz)
                .map(|q| (0..n).map(|b| p[a][b] * c[b][q]).sum())
                .collect()
        })
        .collect();
    let r = if rest.iter().all(|&x| x < 1e-7) {
        Vec::new()
    } else {
        sym(&rest)
    };
    Coupling { c: c2, r }
}

/// Adds to the rows of `j` (outputs × normals) of the slow states what the fast states
/// in `fast` carry into them over the following steps (see [`coupling`]).
fn carry_fast(
    g: &mut Graph,
    step: &StepProgram,
    inputs: &[f64],
    fast: &[(usize, usize)],
    j: &mut M,
) {
    let fast_slots: Vec<usize> = fast.iter().flat_map(|&(o, l)| o..o + l).collect();
    if fast_slots.is_empty() || j.first().is_none_or(|r| r.is_empty()) {
        return;
    }
    let n = j.len().min(step.n_state);
    // Column k: the derivatives of every output by the fast slot k.
    let cols: Vec<Vec<f64>> = fast_slots
        .iter()
        .map(|&k| {
            let ders = g.diff_all(&step.outputs, k as u32);
            g.eval(&ders, inputs)
        })
        .collect();
    let m = fast_slots.len();
    let slow: Vec<usize> = (0..n).filter(|r| !fast_slots.contains(r)).collect();
    let a = nalgebra::DMatrix::from_fn(slow.len(), m, |r, k| cols[k][slow[r]]);
    let i_minus_m = nalgebra::DMatrix::from_fn(m, m, |r, k| {
        f64::from(u8::from(r == k)) - cols[k][fast_slots[r]]
    });
    let Some(inv) = i_minus_m.try_inverse() else {
        return;
    };
    let c = a * inv;
    let ju = nalgebra::DMatrix::from_fn(m, j[0].len(), |r, q| j[fast_slots[r]][q]);
    let carried = c * ju;
    for (r, &row) in slow.iter().enumerate() {
        for q in 0..j[row].len() {
            j[row][q] += carried[(r, q)];
        }
    }
}

/// Sums over independent samples of one quantity: count, Σx, Σx², and the paths the
/// samples cover (one each, or two for an antithetic pair's mean).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Acc {
    pub n: f64,
    pub s: f64,
    pub s2: f64,
    pub paths: f64,
}

impl Acc {
    /// One sample, the mean over `paths` paths.
    fn push(&mut self, x: f64, paths: f64) {
        self.n += 1.0;
        self.s += x;
        self.s2 += x * x;
        self.paths += paths;
    }
    pub fn mean(&self) -> f64 {
        self.s / self.n
    }
    pub fn var(&self) -> f64 {
        if self.n < 2.0 {
            return f64::NAN;
        }
        let m = self.mean();
        ((self.s2 - self.n * m * m) / (self.n - 1.0)).max(0.0)
    }
    /// The standard error of the mean.
    pub fn se(&self) -> f64 {
        (self.var() / self.n).sqrt()
    }
}

/// Per SME order and test function.
#[derive(Debug, Clone, Default)]
pub struct OrderStats {
    /// `φ(z_N) − R` per path (the weak error's estimator).
    pub err: Acc,
    /// `R − R'` per path (3× the extrapolated SDE's bias).
    pub disc: Acc,
    /// `R` per path.
    pub sde: Acc,
}

/// Where a run stopped being finite.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Divergence {
    /// The first step (1-based) at which some path was not finite.
    pub step: usize,
    /// How many paths were not finite at the end.
    pub paths: usize,
}

/// The results of one η.
#[derive(Debug, Clone)]
pub struct EtaStats {
    pub eta: f64,
    /// The time one optimizer step represents.
    pub tau: f64,
    pub steps: usize,
    /// φ(z_N) of the optimizer, per test function.
    pub opt: Vec<Acc>,
    /// `[order][observable]`.
    pub orders: Vec<Vec<OrderStats>>,
    pub opt_divergence: Option<Divergence>,
    /// Per order.
    pub sde_divergence: Vec<Option<Divergence>>,
    /// Per order: why it was not simulated at this step size (see [`Plan::refused`]);
    /// its `orders` and `sde_divergence` entries are then empty placeholders.
    pub refused: Vec<Option<String>>,
    pub paths: usize,
}

#[derive(Debug, Clone)]
struct BlockOut {
    opt: Vec<Acc>,
    orders: Vec<Vec<OrderStats>>,
    opt_bad: (Option<usize>, usize),
    sde_bad: Vec<(Option<usize>, usize)>,
}

/// How the paths of a run are drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    /// Paths per step size (rounded up to whole blocks of [`LANES`]).
    pub paths: usize,
    pub seed: u64,
    /// Paths in antithetic pairs (see the module's documentation). Minibatch noise
    /// draws indices, which have no antithetic; such a plan is run without pairs.
    pub antithetic: bool,
}

impl Sampling {
    /// Independent paths.
    pub fn new(paths: usize, seed: u64) -> Sampling {
        Sampling {
            paths,
            seed,
            antithetic: false,
        }
    }
}

/// Runs the paths of the plan that `sampling` says. `progress` is called with the
/// number of blocks done after each block.
pub fn run(plan: &Plan, sampling: &Sampling, progress: &(dyn Fn(usize) + Sync)) -> EtaStats {
    run_until(plan, sampling, progress, &|| false)
}

/// [`run`], skipping the blocks not yet started once `stop` says so (an interrupted run:
/// its statistics cover only the blocks that ran, and the caller discards them).
pub fn run_until(
    plan: &Plan,
    sampling: &Sampling,
    progress: &(dyn Fn(usize) + Sync),
    stop: &(dyn Fn() -> bool + Sync),
) -> EtaStats {
    let blocks = blocks_of(sampling.paths);
    run_blocks(plan, sampling, 0..blocks, progress, stop).stats(
        &Head::of(plan),
        plan.observables.n_outputs(),
        blocks,
    )
}

/// The blocks of [`LANES`] paths that `paths` paths take.
pub fn blocks_of(paths: usize) -> usize {
    paths.div_ceil(LANES).max(1)
}

/// [`Acc`]s of many blocks, added exactly: the counts are integers (exact in `f64`), the
/// sums [`ExactSum`]s, so the total does not depend on the order or the grouping.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Sums {
    pub n: f64,
    pub s: ExactSum,
    pub s2: ExactSum,
    pub paths: f64,
}

impl Sums {
    fn add(&mut self, a: &Acc) {
        self.n += a.n;
        self.s.add(a.s);
        self.s2.add(a.s2);
        self.paths += a.paths;
    }
    fn merge(&mut self, o: &Sums) {
        self.n += o.n;
        self.s.merge(&o.s);
        self.s2.merge(&o.s2);
        self.paths += o.paths;
    }
    /// The sums rounded once.
    pub fn acc(&self) -> Acc {
        Acc {
            n: self.n,
            s: self.s.value(),
            s2: self.s2.value(),
            paths: self.paths,
        }
    }
}

/// What a range of blocks of one step size gives, before the statistics: the shard of a
/// run (`--shard K/N`) and, over every block, the whole run.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Partial {
    /// Per test function: φ(z_N) of the optimizer.
    pub opt: Vec<Sums>,
    /// `[order simulated][test function]`: the error, the SDE's bias estimate and `R`.
    pub orders: Vec<Vec<[Sums; 3]>>,
    pub opt_divergence: Option<Divergence>,
    /// Per order simulated.
    pub sde_divergence: Vec<Option<Divergence>>,
}

/// Two divergences as one: the first step, the paths summed.
fn join(a: Option<Divergence>, b: Option<Divergence>) -> Option<Divergence> {
    match (a, b) {
        (Some(a), Some(b)) => Some(Divergence {
            step: a.step.min(b.step),
            paths: a.paths + b.paths,
        }),
        (a, b) => a.or(b),
    }
}

/// What a plan says of its step size that the statistics carry: see [`EtaStats`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Head {
    pub eta: f64,
    pub tau: f64,
    pub steps: usize,
    /// As [`Plan::refused`].
    pub refused: Vec<Option<String>>,
}

impl Head {
    pub fn of(plan: &Plan) -> Head {
        Head {
            eta: plan.eta,
            tau: plan.tau,
            steps: plan.steps,
            refused: plan.refused.clone(),
        }
    }
}

impl Partial {
    /// Nothing yet: `n_obs` test functions, `n_sdes` orders simulated.
    pub fn empty(n_obs: usize, n_sdes: usize) -> Partial {
        Partial {
            opt: vec![Sums::default(); n_obs],
            orders: vec![vec![Default::default(); n_obs]; n_sdes],
            opt_divergence: None,
            sde_divergence: vec![None; n_sdes],
        }
    }

    /// Adds another range's results, exactly; `None` when the two do not have the same
    /// test functions and orders.
    pub fn merge(&mut self, o: &Partial) -> Option<()> {
        let shape = |p: &Partial| {
            (
                p.opt.len(),
                p.orders.iter().map(Vec::len).collect::<Vec<_>>(),
                p.sde_divergence.len(),
            )
        };
        if shape(self) != shape(o) {
            return None;
        }
        for (a, b) in self.opt.iter_mut().zip(&o.opt) {
            a.merge(b);
        }
        for (ord, bo) in self.orders.iter_mut().zip(&o.orders) {
            for (a, b) in ord.iter_mut().zip(bo) {
                for (x, y) in a.iter_mut().zip(b) {
                    x.merge(y);
                }
            }
        }
        self.opt_divergence = join(self.opt_divergence, o.opt_divergence);
        for (a, b) in self.sde_divergence.iter_mut().zip(&o.sde_divergence) {
            *a = join(*a, *b);
        }
        Some(())
    }

    fn add(&mut self, o: &BlockOut) {
        for (a, b) in self.opt.iter_mut().zip(&o.opt) {
            a.add(b);
        }
        for (ord, bo) in self.orders.iter_mut().zip(&o.orders) {
            for (a, b) in ord.iter_mut().zip(bo) {
                a[0].add(&b.err);
                a[1].add(&b.disc);
                a[2].add(&b.sde);
            }
        }
        let bad = |bad: (Option<usize>, usize)| bad.0.map(|step| Divergence { step, paths: bad.1 });
        self.opt_divergence = join(self.opt_divergence, bad(o.opt_bad));
        for (d, b) in self.sde_divergence.iter_mut().zip(&o.sde_bad) {
            *d = join(*d, bad(*b));
        }
    }

    /// The statistics of `blocks` blocks whose results these are, each sum rounded once.
    pub fn stats(&self, head: &Head, n_obs: usize, blocks: usize) -> EtaStats {
        let opt = self.opt.iter().map(Sums::acc).collect();
        let mut orders: Vec<Vec<OrderStats>> = self
            .orders
            .iter()
            .map(|o| {
                o.iter()
                    .map(|[e, d, r]| OrderStats {
                        err: e.acc(),
                        disc: d.acc(),
                        sde: r.acc(),
                    })
                    .collect()
            })
            .collect();
        let mut sde_div = self.sde_divergence.clone();
        // Orders refused at this step size keep their place, empty.
        let mut refused = head.refused.clone();
        if refused.is_empty() {
            refused = vec![None; orders.len()];
        }
        for (i, r) in refused.iter().enumerate() {
            if r.is_some() {
                orders.insert(i, vec![OrderStats::default(); n_obs]);
                sde_div.insert(i, None);
            }
        }
        EtaStats {
            eta: head.eta,
            tau: head.tau,
            steps: head.steps,
            opt,
            orders,
            opt_divergence: self.opt_divergence,
            sde_divergence: sde_div,
            refused,
            paths: blocks * LANES,
        }
    }
}

/// Runs the blocks `range` of the run that `sampling` says (block `b` on stream `b` of
/// its seed, as in the whole run) and adds their results exactly. `progress` is called
/// with the number of blocks done after each block; once `stop` says so, the blocks not
/// yet started are skipped.
pub fn run_blocks(
    plan: &Plan,
    sampling: &Sampling,
    range: std::ops::Range<usize>,
    progress: &(dyn Fn(usize) + Sync),
    stop: &(dyn Fn() -> bool + Sync),
) -> Partial {
    // The same streams as the whole run's (the jumps from stream 0 are cheap beside a
    // block's simulation).
    let streams: Vec<Stream> = Streams::new(sampling.seed)
        .streams(range.end)
        .into_iter()
        .skip(range.start)
        .collect();
    let pairs = sampling.antithetic && plan.step.minibatch.is_none();
    // The optimizer's and the SDEs' double-buffered programs, shared by every block.
    let n = plan.layout.n;
    let steppers = Steppers {
        opt: Stepper::new(&plan.step.tape, plan.step.n_state),
        sdes: plan
            .sdes
            .iter()
            .map(|(_, sde, _)| std::array::from_fn(|lvl| Stepper::new(sde.level_tape(lvl), n)))
            .collect(),
    };
    let seed_word = crate::numeric::rng::row_noise_seed(sampling.seed);
    let done = std::sync::atomic::AtomicUsize::new(0);
    let outs: Vec<BlockOut> = streams
        .into_par_iter()
        .zip(range.clone())
        .filter_map(|(rng, b)| {
            if stop() {
                return None;
            }
            let first = (b * LANES) as u64;
            let out = in_avx2(Block(plan, &steppers, rng, pairs, (seed_word, first)));
            let k = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            progress(k);
            Some(out)
        })
        .collect();
    let mut partial = Partial::empty(plan.observables.n_outputs(), plan.sdes.len());
    for o in &outs {
        partial.add(o);
    }
    partial
}

fn set_input(tape: &Tape, regs: &mut [f64], i: usize, v: &[f64]) {
    if let Some(r) = tape.input_reg(i) {
        regs[r * LANES..(r + 1) * LANES].copy_from_slice(v);
    }
}

pub(super) fn fill_input(tape: &Tape, regs: &mut [f64], i: usize, v: f64) {
    if let Some(r) = tape.input_reg(i) {
        regs[r * LANES..(r + 1) * LANES].fill(v);
    }
}

/// One SDE integrated at one level (K, K/2 or K/4 substeps per optimizer step).
struct Level {
    regs: Registers,
    /// Which of the stepper's two programs reads the state now.
    parity: usize,
    /// Whether the state is finite so far.
    finite: bool,
}

/// The state slots `0..n` of a stepped register file.
fn state(stepper: &Stepper, parity: usize, regs: &[f64], n: usize) -> Vec<f64> {
    let mut out = vec![0.0; n * LANES];
    for i in 0..n {
        let r = stepper.state_reg(parity, i);
        out[i * LANES..(i + 1) * LANES].copy_from_slice(&regs[r * LANES..(r + 1) * LANES]);
    }
    out
}

/// Fine substep number `fine` (counted over the run) has ended: a level whose substeps
/// are `2^lvl` fine ones steps if its substep is complete (its increments are in its
/// registers; noise from the rows gets the streams of the fine substeps it covers, from
/// the paths' `keys`). `last`: the optimizer step's last fine substep, when the state is
/// checked. Returns false when the state has just become non-finite.
#[inline(always)]
fn step_level(
    stepper: &Stepper,
    level: &mut Level,
    lvl: usize,
    fine: usize,
    last: bool,
    keys: &RowKeys,
) -> bool {
    let group = 1 << lvl;
    if (fine + 1) % group != 0 {
        return true;
    }
    let first = fine + 1 - group;
    for j in 0..group {
        if let Some(r) = stepper.input_reg(keys.input + j) {
            for (v, &key) in level.regs[r * LANES..(r + 1) * LANES]
                .iter_mut()
                .zip(&keys.keys)
            {
                *v = crate::numeric::rng::row_stream(key, (first + j) as u64);
            }
        }
    }
    let ok = stepper.step(&mut level.regs, &mut level.parity, last && level.finite);
    if last && !ok {
        level.finite = false;
        return false;
    }
    true
}

/// The keys of a block's paths for noise from the rows, and the first stream input.
struct RowKeys {
    keys: [u64; LANES],
    input: usize,
}

/// [`block`] as a [`Job`]: run by [`in_avx2`], so that its loops over the lanes are
/// compiled for AVX2 where the CPU has it.
/// The last field: the run's seed word and the block's first path, for the keys of noise
/// drawn from the rows.
struct Block<'a>(&'a Plan, &'a Steppers, Stream, bool, (u64, u64));

impl Job for Block<'_> {
    type Out = BlockOut;
    #[inline(always)]
    fn run(self) -> BlockOut {
        block(self.0, self.1, self.2, self.3, self.4)
    }
}

/// Standard normals into `out` (whole runs of [`LANES`]); with `pairs`, each odd lane
/// the negative of the even lane before it.
#[inline(always)]
fn normals(rng: &mut Stream, out: &mut [f64], pairs: bool) {
    rng.fill_normal(out);
    if pairs {
        for run in out.chunks_exact_mut(2) {
            run[1] = -run[0];
        }
    }
}

/// The plan's tapes as [`Stepper`]s: the optimizer's, and each SDE's at its three levels
/// (the same program thrice, unless its noise comes from the rows).
struct Steppers {
    opt: Stepper,
    sdes: Vec<[Stepper; 3]>,
}

/// One block of paths (inlined into [`Block::run`]); `pairs`: antithetic pairs.
#[inline(always)]
fn block(
    plan: &Plan,
    steppers: &Steppers,
    mut rng: Stream,
    pairs: bool,
    (seed_word, first): (u64, u64),
) -> BlockOut {
    let step = &plan.step;
    let n_rule = step.n_state;
    let n = plan.layout.n;
    let k_sub = plan.substeps;
    let tau = plan.tau;
    let n_obs = plan.observables.n_outputs();
    // The optimizer: its state lives in the input registers of one of its stepper's two
    // programs (program 0's at the start).
    let ostep = &steppers.opt;
    let mut opar = 0;
    let mut oregs = step.tape.registers();
    for i in 0..n_rule {
        fill_input(&step.tape, &mut oregs, i, plan.start[i]);
    }
    // The normals of a step, in sample-major order (none for minibatch noise).
    let draws = if step.minibatch.is_some() {
        0
    } else {
        step.draws
    };
    let normal_regs: Vec<Option<usize>> = (0..step.samples)
        .flat_map(|s| (0..draws).map(move |q| (s, q)))
        .map(|(s, q)| step.tape.input_reg(step.normal_input(s, q)))
        .collect();
    let kz = normal_regs.len();
    // SDEs: three levels each (K, K/2, K/4 substeps), stepped without copies.
    let steppers = &steppers.sdes;
    let mut levels: Vec<[Level; 3]> = plan
        .sdes
        .iter()
        .map(|(_, sde, _)| {
            std::array::from_fn(|lvl| {
                let tape = sde.level_tape(lvl);
                let mut regs = tape.registers();
                for i in 0..n {
                    fill_input(tape, &mut regs, i, plan.start[i]);
                }
                // The time of one substep: K, K/2 and K/4 substeps per optimizer step.
                fill_input(tape, &mut regs, 2 * n, tau / (k_sub >> lvl) as f64);
                Level {
                    regs,
                    parity: 0,
                    finite: true,
                }
            })
        })
        .collect();
    let keys = RowKeys {
        keys: std::array::from_fn(|l| crate::numeric::rng::row_key(seed_word, first + l as u64)),
        input: 2 * n + 1,
    };
    let no_bridge = plan.sdes.iter().all(|(_, sde, _)| sde.rows.is_some());
    let mut z = vec![0.0; kz.max(1) * LANES];
    let mut y = vec![0.0; n * LANES];
    let mut bridge = vec![0.0; k_sub * n * LANES];
    let mut mean = vec![0.0; n * LANES];
    let mut w = vec![0.0; n * LANES];
    let mut opt_bad: Option<usize> = None;
    let mut sde_bad: Vec<Option<usize>> = vec![None; plan.sdes.len()];
    let sqrt_tau = tau.sqrt();
    let sub_sd = (tau / k_sub as f64).sqrt();
    let mut ostate = vec![0.0; n * LANES];
    for i in 0..n {
        ostate[i * LANES..(i + 1) * LANES].fill(plan.start[i]);
    }
    for k in 0..plan.steps {
        // The optimizer: normals straight into their registers.
        // (Drawn in the same order either way; kept in `z` only for the coupling.)
        for (q, r) in normal_regs.iter().enumerate() {
            let zq = &mut z[q * LANES..(q + 1) * LANES];
            match r {
                Some(r) => {
                    let reg = &mut oregs[r * LANES..(r + 1) * LANES];
                    normals(&mut rng, reg, pairs);
                    if !plan.sdes.is_empty() {
                        zq.copy_from_slice(reg);
                    }
                }
                None => normals(&mut rng, zq, pairs),
            }
        }
        step.draw_minibatch(&mut oregs, &mut rng);
        fill_input(
            &step.tape,
            &mut oregs,
            step.counter_input(),
            (plan.counter0 + k as u64) as f64,
        );
        if !ostep.step(&mut oregs, &mut opar, opt_bad.is_none()) {
            opt_bad = Some(k + 1);
        }
        if k + 1 == plan.steps {
            ostate[..n_rule * LANES].copy_from_slice(&state(ostep, opar, &oregs, n_rule));
        }
        if plan.sdes.is_empty() {
            continue;
        }
        // The Brownian bridge normals, shared by every SME, and their means (none when
        // every SME draws its noise from the rows).
        if no_bridge {
            for (o, lv) in levels.iter_mut().enumerate() {
                for i in 0..k_sub {
                    for (lvl, level) in lv.iter_mut().enumerate() {
                        let fine = k * k_sub + i;
                        if !step_level(&steppers[o][lvl], level, lvl, fine, i + 1 == k_sub, &keys) {
                            sde_bad[o] = sde_bad[o].or(Some(k + 1));
                        }
                    }
                }
            }
            continue;
        }
        normals(&mut rng, &mut bridge, pairs);
        mean.fill(0.0);
        for i in 0..k_sub {
            for (m, &u) in mean
                .iter_mut()
                .zip(&bridge[i * n * LANES..(i + 1) * n * LANES])
            {
                *m += u;
            }
        }
        let inv_k = 1.0 / k_sub as f64;
        for m in &mut mean {
            *m *= inv_k;
        }
        for (o, (_, sde, cp)) in plan.sdes.iter().enumerate() {
            // w = C z + R y: this step's Brownian increment is √τ w.
            w.fill(0.0);
            for a in 0..n {
                let wa = &mut w[a * LANES..(a + 1) * LANES];
                for (q, &c) in cp.c[a].iter().enumerate() {
                    if c != 0.0 {
                        for (o, &zz) in wa.iter_mut().zip(&z[q * LANES..(q + 1) * LANES]) {
                            *o += c * zz;
                        }
                    }
                }
            }
            if !cp.r.is_empty() {
                normals(&mut rng, &mut y, pairs);
                for a in 0..n {
                    for c2 in 0..n {
                        let r = cp.r[a][c2];
                        if r != 0.0 {
                            let (wa, yc) = (
                                &mut w[a * LANES..(a + 1) * LANES],
                                &y[c2 * LANES..(c2 + 1) * LANES],
                            );
                            for (o, &yy) in wa.iter_mut().zip(yc) {
                                *o += r * yy;
                            }
                        }
                    }
                }
            }
            // The fine increments, the bridge through √τ w, written straight into the
            // increment registers: fine substep i is level 0's substep i, and is summed into
            // the increments of levels 1 and 2 (substeps of 2 and 4 fine ones), which step
            // when their sums are complete. The levels are independent states, so
            // interleaving their steps changes nothing.
            let drift_part = sqrt_tau * inv_k;
            let [l0, l1, l2] = &mut levels[o];
            for i in 0..k_sub {
                for a in 0..n {
                    let Some(r) = sde.tape.input_reg(n + a) else {
                        continue;
                    };
                    let at = r * LANES..(r + 1) * LANES;
                    let (d0, d1, d2) = (
                        &mut l0.regs[at.clone()],
                        &mut l1.regs[at.clone()],
                        &mut l2.regs[at],
                    );
                    let u = &bridge[(i * n + a) * LANES..(i * n + a + 1) * LANES];
                    let (m, wa) = (
                        &mean[a * LANES..(a + 1) * LANES],
                        &w[a * LANES..(a + 1) * LANES],
                    );
                    let (first1, first2) = (i % 2 == 0, i % 4 == 0);
                    for l in 0..LANES {
                        let inc = drift_part * wa[l] + sub_sd * (u[l] - m[l]);
                        d0[l] = inc;
                        d1[l] = if first1 { inc } else { d1[l] + inc };
                        d2[l] = if first2 { inc } else { d2[l] + inc };
                    }
                }
                for (lvl, level) in [&mut *l0, &mut *l1, &mut *l2].into_iter().enumerate() {
                    let fine = k * k_sub + i;
                    if !step_level(&steppers[o][lvl], level, lvl, fine, i + 1 == k_sub, &keys) {
                        sde_bad[o] = sde_bad[o].or(Some(k + 1));
                    }
                }
            }
        }
    }
    // The optimizer's clock slot (if any) is the time it has run.
    if plan.layout.clock {
        ostate[(n - 1) * LANES..n * LANES].fill((plan.counter0 + plan.steps as u64) as f64 * tau);
    }
    // Observables.
    let obs = &plan.observables;
    let mut obs_regs = obs.registers();
    let mut eval_obs = |state: &[f64]| -> Vec<f64> {
        for i in 0..n {
            set_input(obs, &mut obs_regs, i, &state[i * LANES..(i + 1) * LANES]);
        }
        obs.run(&mut obs_regs);
        let mut out = vec![0.0; n_obs * LANES];
        for j in 0..n_obs {
            let r = obs.output_reg(j);
            out[j * LANES..(j + 1) * LANES].copy_from_slice(&obs_regs[r * LANES..(r + 1) * LANES]);
        }
        out
    };
    let a = eval_obs(&ostate);
    // The samples: one lane each, or an antithetic pair of lanes.
    let width = if pairs { 2 } else { 1 };
    let units = || (0..LANES).step_by(width).map(move |l| l..l + width);
    let mean_over = |v: &[f64], j: usize, u: std::ops::Range<usize>| {
        u.map(|l| v[j * LANES + l]).sum::<f64>() / width as f64
    };
    let mut opt = vec![Acc::default(); n_obs];
    let finite_lane = |v: &[f64], l: usize| (0..n_obs).all(|j| v[j * LANES + l].is_finite());
    let finite = |v: &[f64], mut u: std::ops::Range<usize>| u.all(|l| finite_lane(v, l));
    let mut opt_bad_paths = 0;
    for u in units() {
        if !finite(&a, u.clone()) {
            opt_bad_paths += width;
            continue;
        }
        for (j, acc) in opt.iter_mut().enumerate() {
            acc.push(mean_over(&a, j, u.clone()), width as f64);
        }
    }
    let mut orders = Vec::new();
    let mut sde_bad_out = Vec::new();
    for (o, lv) in levels.iter().enumerate() {
        let vals: Vec<Vec<f64>> = lv
            .iter()
            .enumerate()
            .map(|(lvl, level)| eval_obs(&state(&steppers[o][lvl], level.parity, &level.regs, n)))
            .collect();
        let mut stats = vec![OrderStats::default(); n_obs];
        let mut bad = 0;
        for u in units() {
            if !finite(&a, u.clone()) || vals.iter().any(|v| !finite(v, u.clone())) {
                bad += width;
                continue;
            }
            for (j, st) in stats.iter_mut().enumerate() {
                let at = |v: &[f64]| mean_over(v, j, u.clone());
                let (f, m, c) = (at(&vals[0]), at(&vals[1]), at(&vals[2]));
                let r = 2.0 * f - m;
                let r2 = 2.0 * m - c;
                st.err.push(at(&a) - r, width as f64);
                st.disc.push(r - r2, width as f64);
                st.sde.push(r, width as f64);
            }
        }
        orders.push(stats);
        sde_bad_out.push((sde_bad[o], bad));
    }
    BlockOut {
        opt,
        orders,
        opt_bad: (opt_bad, opt_bad_paths),
        sde_bad: sde_bad_out,
    }
}
