//! Exit times: the optimizer and its SMEs, each run until it leaves a region.
//!
//! A region is a scalar function `g` of the state; a path is inside while `g < 0` and
//! exits at the first optimizer step `k` (time `kτ`) at which `g ≥ 0`. The SDEs are
//! integrated by Euler–Maruyama with `K` substeps per optimizer step and checked on the
//! optimizer's grid only, so that both are read like for like. A path that is still
//! inside after `max_steps` is censored (kept, and counted as such); a path that stops
//! being finite is counted apart, never averaged in.
//!
//! Each model draws from its own streams (model `m`, block `b`: stream `m·blocks + b`),
//! so the exit times of different models are independent samples, and the numbers do
//! not depend on the thread count.

#![allow(
    clippy::needless_range_loop,
    reason = "lane and component loops index several arrays in step"
)]

use super::compile::{SdeProgram, StepProgram};
use super::ha::{HaProgram, Work};
use super::weak::fill_input;
use crate::numeric::rng::{in_avx2, Job, Stream, Streams};
use crate::numeric::tape::{Tape, LANES};
use rayon::prelude::*;

/// How one model advances by one optimizer step.
#[derive(Debug, Clone)]
pub enum Sampler {
    /// The optimizer itself (the plan's compiled step).
    Optimizer,
    /// An SDE by Euler–Maruyama with the plan's substeps.
    Em(SdeProgram),
    /// A linear SDE by its exact Gaussian transition over one step: a tape with inputs
    /// the state (`0..n`) and `n` standard normals (`n..2n`), outputs the next state.
    Exact(Tape),
    /// The Hessian-aware SME by Euler–Maruyama with the plan's substeps, its
    /// coefficients computed per state (parameter-only rules).
    Ha(HaProgram),
}

/// One model of an escape run.
#[derive(Debug, Clone)]
pub struct EscapeModel {
    pub name: String,
    pub sampler: Sampler,
}

/// Everything one η needs.
pub struct EscapePlan {
    pub eta: f64,
    pub tau: f64,
    pub max_steps: usize,
    pub step: StepProgram,
    pub models: Vec<EscapeModel>,
    /// The region function over the layout's slots (inside while `< 0`).
    pub region: Tape,
    /// The start state (layout slots).
    pub start: Vec<f64>,
    /// The slots of the layout (the clock, if any, is the last).
    pub n: usize,
    /// Whether the last slot is the clock `t = kτ`.
    pub clock: bool,
    pub counter0: u64,
    pub substeps: usize,
}

/// The exit times of one model over all paths.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ExitTimes {
    pub model: String,
    /// The exit step of every path that exited (1-based).
    pub exits: Vec<u32>,
    /// Paths still inside after the last step.
    pub censored: usize,
    /// Paths that stopped being finite, or reached a state where the model is not
    /// defined, before exiting; and the first step it happened.
    pub diverged: usize,
    pub first_divergence: Option<u32>,
    /// Of `diverged`, the paths that left the model's domain (HA-SME: `1 − ηλ ≤ 0`).
    pub undefined: usize,
}

/// What one block of one model gives.
#[derive(Default)]
struct BlockOut {
    exits: Vec<u32>,
    censored: usize,
    diverged: usize,
    undefined: usize,
    first_bad: Option<u32>,
    /// Lane-steps simulated (every step of every lane that held a path).
    lane_steps: u64,
}

/// How `paths` paths are split into blocks: about 4 lane-widths each (so that a lane
/// whose path has left starts the block's next path, and little work waits on the
/// slowest path), at most 1024 blocks. The counts sum to `paths` exactly.
pub fn quotas(paths: usize) -> Vec<usize> {
    let blocks = (paths / (4 * LANES)).clamp(1, 1024);
    (0..blocks)
        .map(|b| paths / blocks + usize::from(b < paths % blocks))
        .collect()
}

/// Simulates every model on `paths` paths; returns the exit times and the lane-steps
/// simulated.
pub fn run(plan: &EscapePlan, paths: usize, seed: u64) -> (Vec<ExitTimes>, u64) {
    run_until(plan, paths, seed, &|| false)
}

/// [`run`], skipping the blocks not yet started once `stop` says so (an interrupted run,
/// whose results the caller discards).
pub fn run_until(
    plan: &EscapePlan,
    paths: usize,
    seed: u64,
    stop: &(dyn Fn() -> bool + Sync),
) -> (Vec<ExitTimes>, u64) {
    let blocks = quotas(paths.max(1)).len();
    run_blocks(plan, paths, seed, 0..blocks, stop)
}

/// [`run_until`] over the blocks `range` of the whole run's (each model's block `b` on
/// the stream the whole run gives it): the exit times in block order, the counts and
/// the lane-steps of those blocks. A shard of a run (`--shard K/N`); the shards' exit
/// times concatenated in shard order are the whole run's.
pub fn run_blocks(
    plan: &EscapePlan,
    paths: usize,
    seed: u64,
    range: std::ops::Range<usize>,
    stop: &(dyn Fn() -> bool + Sync),
) -> (Vec<ExitTimes>, u64) {
    let quotas = quotas(paths.max(1));
    let blocks = quotas.len();
    let models = plan.models.len();
    let range = range.start.min(blocks)..range.end.min(blocks);
    let mine = range.len();
    let streams: Vec<(usize, Stream)> = Streams::new(seed)
        .streams(blocks * models)
        .into_iter()
        .enumerate()
        .filter(|(i, _)| range.contains(&(i % blocks)))
        .collect();
    let outs: Vec<BlockOut> = streams
        .into_par_iter()
        .map(|(i, rng)| {
            if stop() {
                return BlockOut::default();
            }
            in_avx2(Block(plan, i / blocks, quotas[i % blocks], rng, stop))
        })
        .collect();
    let lane_steps = outs.iter().map(|o| o.lane_steps).sum();
    let times = (0..models)
        .map(|m| {
            let mut t = ExitTimes {
                model: plan.models[m].name.clone(),
                exits: Vec::new(),
                censored: 0,
                diverged: 0,
                first_divergence: None,
                undefined: 0,
            };
            for o in &outs[m * mine..(m + 1) * mine] {
                t.exits.extend(&o.exits);
                t.censored += o.censored;
                t.diverged += o.diverged;
                t.undefined += o.undefined;
                t.first_divergence = join(t.first_divergence, o.first_bad);
            }
            t
        })
        .collect();
    (times, lane_steps)
}

/// The first of two first divergences.
fn join(a: Option<u32>, b: Option<u32>) -> Option<u32> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl ExitTimes {
    /// Appends the exit times of the blocks that follow, and adds their counts.
    pub fn extend(&mut self, o: &ExitTimes) {
        self.exits.extend(&o.exits);
        self.censored += o.censored;
        self.diverged += o.diverged;
        self.undefined += o.undefined;
        self.first_divergence = join(self.first_divergence, o.first_divergence);
    }
}

/// Copies state slots `0..count` into a tape's input registers.
fn load(tape: &Tape, regs: &mut [f64], state: &[f64], count: usize) {
    for i in 0..count {
        if let Some(r) = tape.input_reg(i) {
            regs[r * LANES..(r + 1) * LANES].copy_from_slice(&state[i * LANES..(i + 1) * LANES]);
        }
    }
}

/// Copies a tape's outputs `0..count` into the state.
fn store(tape: &Tape, regs: &[f64], state: &mut [f64], count: usize) {
    for i in 0..count {
        let r = tape.output_reg(i);
        state[i * LANES..(i + 1) * LANES].copy_from_slice(&regs[r * LANES..(r + 1) * LANES]);
    }
}

/// Fills the inputs `first..first + count` with normals scaled by `scale`.
fn normals(
    tape: &Tape,
    regs: &mut [f64],
    first: usize,
    count: usize,
    scale: f64,
    rng: &mut Stream,
) {
    for a in first..first + count {
        if let Some(r) = tape.input_reg(a) {
            let dst = &mut regs[r * LANES..(r + 1) * LANES];
            rng.fill_normal(dst);
            if scale != 1.0 {
                for v in dst.iter_mut() {
                    *v *= scale;
                }
            }
        }
    }
}

/// Writes one value per lane into input `i`.
fn lanes_input(tape: &Tape, regs: &mut [f64], i: usize, v: impl Fn(usize) -> f64) {
    if let Some(r) = tape.input_reg(i) {
        for (lane, x) in regs[r * LANES..(r + 1) * LANES].iter_mut().enumerate() {
            *x = v(lane);
        }
    }
}

/// [`block`] as a [`Job`]: run by [`in_avx2`], so that its loops over the lanes are
/// compiled for AVX2 where the CPU has it.
struct Block<'a>(
    &'a EscapePlan,
    usize,
    usize,
    Stream,
    &'a (dyn Fn() -> bool + Sync),
);

impl Job for Block<'_> {
    type Out = BlockOut;
    #[inline(always)]
    fn run(self) -> BlockOut {
        block(self.0, self.1, self.2, self.3, self.4)
    }
}

/// One block of one model: `quota` paths through `LANES` lanes; a lane whose path has
/// left (or stopped, or reached the horizon) starts the next path at once. Every lane
/// keeps its own step count, so the clock and the counter are per lane. Every 4096
/// steps it asks `stop`, and an interrupted block ends where it is (its results are
/// discarded: see [`run_until`]).
#[inline(always)]
fn block(
    plan: &EscapePlan,
    model: usize,
    quota: usize,
    mut rng: Stream,
    stop: &(dyn Fn() -> bool + Sync),
) -> BlockOut {
    let n = plan.n;
    // The slots a model advances (the clock is set from the step counter).
    let n_dyn = if plan.clock { n - 1 } else { n };
    let mut out = BlockOut {
        exits: Vec::with_capacity(quota),
        censored: 0,
        diverged: 0,
        undefined: 0,
        first_bad: None,
        lane_steps: 0,
    };
    // The block's step count, and the count at which each lane's path began (its steps
    // are the difference); idle lanes (no path left to start) are `done` for good.
    let mut now = 0u32;
    let mut begin: [u32; LANES] = [0; LANES];
    let mut done: [bool; LANES] = [true; LANES];
    let mut started = 0usize;
    let mut rregs = plan.region.registers();
    let mut state = vec![0.0; n * LANES];
    let restart = |lane: usize,
                   now: u32,
                   state: &mut [f64],
                   begin: &mut [u32; LANES],
                   done: &mut [bool; LANES],
                   started: &mut usize| {
        if *started < quota {
            for i in 0..n {
                state[i * LANES + lane] = plan.start[i];
            }
            begin[lane] = now;
            done[lane] = false;
            *started += 1;
        } else {
            done[lane] = true;
        }
    };
    for lane in 0..LANES {
        restart(lane, 0, &mut state, &mut begin, &mut done, &mut started);
    }
    let sampler = &plan.models[model].sampler;
    let sub = plan.substeps.max(1);
    let delta = plan.tau / sub as f64;
    let sub_sd = delta.sqrt();
    let (tape, mut regs) = match sampler {
        Sampler::Optimizer => (&plan.step.tape, plan.step.tape.registers()),
        Sampler::Em(sde) => (&sde.tape, sde.tape.registers()),
        Sampler::Exact(t) => (t, t.registers()),
        Sampler::Ha(h) => (&h.tape, h.tape.registers()),
    };
    let mut keys = [0u64; LANES];
    if let Sampler::Em(sde) = sampler {
        fill_input(tape, &mut regs, 2 * n, delta);
        // Noise from the rows: a key per lane (from this block's stream, so drawn only
        // then), and below a counter that the block's step count makes new for every
        // substep of every path a lane runs.
        if sde.rows.is_some() {
            let word = rng.next_u64();
            keys = std::array::from_fn(|l| crate::numeric::rng::row_key(word, l as u64));
        }
    }
    // HA-SME scratch: drift, factor, normals and the per-lane inputs.
    let d = if let Sampler::Ha(h) = sampler { h.d } else { 0 };
    let mut work = Work::new(d);
    let (mut b, mut l) = (vec![0.0; d], vec![0.0; d * d]);
    let (mut g, mut hs, mut sg) = (vec![0.0; d], vec![0.0; d * d], vec![0.0; d * d]);
    let mut z = vec![0.0; d * LANES];
    let outs: Vec<usize> = (0..d + 2 * d * d).map(|i| tape.output_reg(i)).collect();
    let max = plan.max_steps as u32;
    let counter0 = plan.counter0 as f64;
    let mut bad: [bool; LANES] = [false; LANES];
    let mut any_bad = false;
    // The most steps any live lane has taken (the horizon test needs only this).
    let mut oldest = 0u32;
    let mut live = done.iter().filter(|&&x| !x).count();
    while live > 0 {
        if now % 4096 == 4095 && stop() {
            break;
        }
        out.lane_steps += live as u64;
        // The clock of each lane before this step.
        let steps = |lane: usize| now - begin[lane];
        let clock = |lane: usize| (counter0 + f64::from(steps(lane))) * plan.tau;
        match sampler {
            Sampler::Optimizer => {
                let step = &plan.step;
                load(tape, &mut regs, &state, step.n_state);
                if step.minibatch.is_some() {
                    step.draw_minibatch(&mut regs, &mut rng);
                } else {
                    for s in 0..step.samples {
                        for q in 0..step.draws {
                            if let Some(r) = tape.input_reg(step.normal_input(s, q)) {
                                rng.fill_normal(&mut regs[r * LANES..(r + 1) * LANES]);
                            }
                        }
                    }
                }
                lanes_input(tape, &mut regs, step.counter_input(), |lane| {
                    counter0 + f64::from(steps(lane))
                });
                tape.run(&mut regs);
                store(tape, &regs, &mut state, step.n_state);
            }
            Sampler::Em(_) => {
                for s in 0..sub {
                    load(tape, &mut regs, &state, n_dyn);
                    if plan.clock {
                        lanes_input(tape, &mut regs, n - 1, |lane| {
                            clock(lane) + s as f64 * delta
                        });
                    }
                    normals(tape, &mut regs, n, n, sub_sd, &mut rng);
                    let counter = (now as usize * sub + s) as u64;
                    lanes_input(tape, &mut regs, 2 * n + 1, |l| {
                        crate::numeric::rng::row_stream(keys[l], counter)
                    });
                    tape.run(&mut regs);
                    store(tape, &regs, &mut state, n_dyn);
                }
            }
            Sampler::Exact(_) => {
                load(tape, &mut regs, &state, n_dyn);
                if plan.clock {
                    lanes_input(tape, &mut regs, n - 1, clock);
                }
                normals(tape, &mut regs, n, n, 1.0, &mut rng);
                tape.run(&mut regs);
                store(tape, &regs, &mut state, n_dyn);
            }
            Sampler::Ha(h) if d <= 2 => {
                for _ in 0..sub {
                    load(tape, &mut regs, &state, d);
                    tape.run(&mut regs);
                    rng.fill_normal(&mut z);
                    any_bad |= h.substep_lanes(
                        &regs, &outs, &z, delta, sub_sd, &mut state, &done, &mut bad,
                    );
                }
            }
            Sampler::Ha(h) => {
                for _ in 0..sub {
                    load(tape, &mut regs, &state, d);
                    tape.run(&mut regs);
                    rng.fill_normal(&mut z);
                    for lane in 0..LANES {
                        if done[lane] || bad[lane] {
                            continue;
                        }
                        let at = |i: usize| regs[tape.output_reg(i) * LANES + lane];
                        for i in 0..d {
                            g[i] = at(i);
                        }
                        for i in 0..d * d {
                            hs[i] = at(d + i);
                            sg[i] = at(d + d * d + i);
                        }
                        if h.coefficients(&g, &hs, &sg, &mut work, &mut b, &mut l)
                            .is_none()
                        {
                            bad[lane] = true;
                            any_bad = true;
                            continue;
                        }
                        for i in 0..d {
                            let noise: f64 =
                                (0..=i).map(|j| l[i * d + j] * z[j * LANES + lane]).sum();
                            state[i * LANES + lane] += b[i] * delta + noise * sub_sd;
                        }
                    }
                }
            }
        }
        if plan.clock {
            for lane in 0..LANES {
                state[(n - 1) * LANES + lane] = clock(lane) + plan.tau;
            }
        }
        now += 1;
        // The region, on the state after this step.
        load(&plan.region, &mut rregs, &state, n);
        plan.region.run(&mut rregs);
        let gr = plan.region.output_reg(0);
        let vals = &rregs[gr * LANES..(gr + 1) * LANES];
        // Most steps no path leaves, stops or reaches the horizon: one branch-free test
        // over the values first (lanes with no path left are few, at the very end).
        oldest += 1;
        let any = vals
            .iter()
            .fold(false, |acc, &v| acc | (v >= 0.0) | v.is_nan())
            | (oldest >= max)
            | any_bad
            | state.iter().fold(false, |acc, &v| acc | !v.is_finite());
        if !any {
            continue;
        }
        any_bad = false;
        for lane in 0..LANES {
            if done[lane] {
                continue;
            }
            let v = vals[lane];
            let k = now - begin[lane];
            // A state that overflowed where the region does not read it (a component
            // the region ignores) has diverged all the same.
            let finite = (0..n).all(|i| state[i * LANES + lane].is_finite());
            if bad[lane] || !v.is_finite() || !finite {
                if bad[lane] {
                    out.undefined += 1;
                }
                bad[lane] = false;
                out.diverged += 1;
                out.first_bad = Some(out.first_bad.map_or(k, |f| f.min(k)));
            } else if v >= 0.0 {
                out.exits.push(k);
            } else if k >= max {
                out.censored += 1;
            } else {
                continue;
            }
            restart(lane, now, &mut state, &mut begin, &mut done, &mut started);
        }
        live = done.iter().filter(|&&x| !x).count();
        oldest = (0..LANES)
            .filter(|&l| !done[l])
            .map(|l| now - begin[l])
            .max()
            .unwrap_or(0);
    }
    out
}

/// A Kaplan–Meier summary of exit steps censored at `horizon` steps.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Survival {
    /// The restricted mean exit step (the area under the survival curve up to the
    /// horizon) and its standard error (Greenwood).
    pub mean: f64,
    pub mean_se: f64,
    /// The median exit step, if the survival curve reaches ½ before the horizon.
    pub median: Option<f64>,
    /// `(step, P(τ > step))` at every step where the curve drops.
    pub curve: Vec<(u32, f64)>,
    pub exited: usize,
    pub censored: usize,
}

/// Kaplan–Meier estimate from exit steps and a number of paths censored at `horizon`.
pub fn survival(exits: &[u32], censored: usize, horizon: u32) -> Survival {
    let mut times = exits.to_vec();
    times.sort_unstable();
    let total = times.len() + censored;
    let mut at_risk = total as f64;
    let mut s = 1.0;
    let mut curve = Vec::new();
    // (time, S after, deaths, at risk before)
    let mut events: Vec<(u32, f64, f64, f64)> = Vec::new();
    let mut i = 0;
    while i < times.len() {
        let t = times[i];
        let mut d = 0.0;
        while i < times.len() && times[i] == t {
            d += 1.0;
            i += 1;
        }
        let n = at_risk;
        s *= 1.0 - d / n;
        at_risk -= d;
        curve.push((t, s));
        events.push((t, s, d, n));
    }
    // Restricted mean: the survival curve starts at 1 at step 0 and is a step function;
    // a path that exits at step t contributes t.
    let mut mean = 0.0;
    let mut prev_t = 0u32;
    let mut prev_s = 1.0;
    for &(t, st, _, _) in &events {
        mean += prev_s * f64::from(t - prev_t);
        prev_t = t;
        prev_s = st;
    }
    mean += prev_s * f64::from(horizon.saturating_sub(prev_t));
    // Greenwood: Var = Σ_j A_j² d_j / (n_j (n_j − d_j)), A_j the area after t_j.
    let mut var = 0.0;
    for (j, &(t, _, d, n)) in events.iter().enumerate() {
        let mut area = 0.0;
        let mut pt = t;
        let mut ps = events[j].1;
        for &(t2, s2, _, _) in &events[j + 1..] {
            area += ps * f64::from(t2 - pt);
            pt = t2;
            ps = s2;
        }
        area += ps * f64::from(horizon.saturating_sub(pt));
        if n > d {
            var += area * area * d / (n * (n - d));
        }
    }
    let median = curve
        .iter()
        .find(|&&(_, st)| st <= 0.5)
        .map(|&(t, _)| f64::from(t));
    Survival {
        mean,
        mean_se: var.sqrt(),
        median,
        curve,
        exited: times.len(),
        censored,
    }
}

/// The two-sided p-value of the log-rank test that two samples of censored exit steps
/// come from one law.
pub fn log_rank(a: &[u32], a_censored: usize, b: &[u32], b_censored: usize) -> f64 {
    let mut ta = a.to_vec();
    let mut tb = b.to_vec();
    ta.sort_unstable();
    tb.sort_unstable();
    let (mut na, mut nb) = (
        (ta.len() + a_censored) as f64,
        (tb.len() + b_censored) as f64,
    );
    let (mut i, mut j) = (0, 0);
    let (mut o_minus_e, mut var) = (0.0, 0.0);
    while i < ta.len() || j < tb.len() {
        let t = match (ta.get(i), tb.get(j)) {
            (Some(&x), Some(&y)) => x.min(y),
            (Some(&x), None) => x,
            (None, Some(&y)) => y,
            (None, None) => break,
        };
        let mut da = 0.0;
        while i < ta.len() && ta[i] == t {
            da += 1.0;
            i += 1;
        }
        let mut db = 0.0;
        while j < tb.len() && tb[j] == t {
            db += 1.0;
            j += 1;
        }
        let n = na + nb;
        let d = da + db;
        if n > 1.0 {
            o_minus_e += da - d * na / n;
            var += d * (na / n) * (nb / n) * (n - d) / (n - 1.0);
        }
        na -= da;
        nb -= db;
    }
    if var <= 0.0 {
        return 1.0;
    }
    let z = o_minus_e / var.sqrt();
    erfc(z.abs() / std::f64::consts::SQRT_2)
}

/// The complementary error function (Numerical Recipes' Chebyshev fit, relative error
/// below 1.2e-7 everywhere).
pub fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_censoring_the_restricted_mean_is_the_sample_mean() {
        let exits = [3, 1, 4, 1, 5, 9, 2, 6];
        let s = survival(&exits, 0, 100);
        let mean = exits.iter().sum::<u32>() as f64 / exits.len() as f64;
        assert!((s.mean - mean).abs() < 1e-12, "{} vs {mean}", s.mean);
        // Greenwood without censoring: the standard error of the sample mean with
        // the 1/n variance.
        let var = exits
            .iter()
            .map(|&t| (t as f64 - mean).powi(2))
            .sum::<f64>()
            / exits.len() as f64;
        assert!(
            (s.mean_se - (var / exits.len() as f64).sqrt()).abs() < 1e-9,
            "{}",
            s.mean_se
        );
        assert_eq!(s.median, Some(3.0));
        assert_eq!(s.curve.last().unwrap().1, 0.0);
    }

    #[test]
    fn censored_paths_count_up_to_the_horizon() {
        // Half exit at 2, half are censored at the horizon 10: restricted mean 6.
        let s = survival(&[2, 2], 2, 10);
        assert!((s.mean - 6.0).abs() < 1e-12);
        assert_eq!(s.median, Some(2.0));
        assert_eq!((s.exited, s.censored), (2, 2));
    }

    #[test]
    fn the_log_rank_test_tells_laws_apart() {
        // Same law: p not small; shifted: p tiny.
        let a: Vec<u32> = (0..400).map(|i| 1 + (i * 7919) % 50).collect();
        let b: Vec<u32> = (0..400).map(|i| 1 + (i * 104_729) % 50).collect();
        let c: Vec<u32> = (0..400).map(|i| 11 + (i * 7919) % 50).collect();
        assert!(log_rank(&a, 0, &b, 0) > 0.05);
        assert!(log_rank(&a, 0, &c, 0) < 1e-6);
        assert!((erfc(0.0) - 1.0).abs() < 1e-7);
        assert!((erfc(1.0) - 0.157_299_207).abs() < 1e-7);
    }
}
