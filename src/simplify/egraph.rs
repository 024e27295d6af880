//! Compact forms by equality saturation (egg).
//!
//! A drift or diffusion is a sum `Σ_k c_k T_k` of polynomial coefficients `c_k` (in the
//! small parameter and the hyperparameters) times tensor terms `T_k`. It goes into an
//! e-graph as a commutative-ring expression with the tensor terms as opaque leaves
//! (each sum term holds exactly one leaf, so products of two tensors never arise); the
//! rules below (commutativity, associativity, factoring, constant folding) saturate
//! under iteration and node limits, and the smallest expression is extracted:
//! `-λ v - ∇f - (h/2)(λ² v + λ ∇f + ∇²f v)` becomes `-(1 + λh/2)(λ v + ∇f) - (h/2) ∇²f v`.
//!
//! Every rule is checked by evaluating both sides at random points (see the tests), as
//! ruler checks its rules. The module is private to `simplify`; egg does not leak.

use crate::algebra::poly::{Sym, Symbols};
use crate::algebra::tensor::{TExpr, Term};
use egg::{
    define_language, Analysis, CostFunction, DidMerge, EGraph, Extractor, Id, Language, RecExpr,
    Rewrite, Runner, Symbol,
};
use num_rational::BigRational;
use num_traits::{One, ToPrimitive, Zero};

define_language! {
    /// Ring expressions over rationals, named scalars and opaque tensor leaves;
    /// `(^ symbol k)` has a constant integer exponent `k` (also negative).
    pub enum Coef {
        "+" = Add([Id; 2]),
        "*" = Mul([Id; 2]),
        "^" = Pow([Id; 2]),
        Num(BigRational),
        Symbol(Symbol),
    }
}

/// Constant folding: an e-class that is a number knows it.
#[derive(Default)]
pub struct Fold;

impl Analysis<Coef> for Fold {
    type Data = Option<BigRational>;

    fn make(egraph: &mut EGraph<Coef, Self>, enode: &Coef) -> Self::Data {
        let x = |i: &Id| egraph[*i].data.clone();
        match enode {
            Coef::Num(n) => Some(n.clone()),
            Coef::Add([a, b]) => Some(x(a)? + x(b)?),
            Coef::Mul([a, b]) => Some(x(a)? * x(b)?),
            _ => None,
        }
    }

    fn merge(&mut self, to: &mut Self::Data, from: Self::Data) -> DidMerge {
        egg::merge_option(to, from, |a, b| {
            debug_assert_eq!(*a, b, "one e-class, two constants");
            DidMerge(false, false)
        })
    }

    fn modify(egraph: &mut EGraph<Coef, Self>, id: Id) {
        if let Some(c) = egraph[id].data.clone() {
            let added = egraph.add(Coef::Num(c));
            egraph.union(id, added);
        }
    }
}

/// The rules, as (name, left, right) patterns; both sides are checked numerically.
#[rustfmt::skip]
pub const RULES: &[(&str, &str, &str)] = &[
    ("add-comm",        "(+ ?a ?b)",                 "(+ ?b ?a)"),
    ("add-assoc",       "(+ ?a (+ ?b ?c))",          "(+ (+ ?a ?b) ?c)"),
    ("add-assoc-rev",   "(+ (+ ?a ?b) ?c)",          "(+ ?a (+ ?b ?c))"),
    ("mul-comm",        "(* ?a ?b)",                 "(* ?b ?a)"),
    ("mul-assoc",       "(* ?a (* ?b ?c))",          "(* (* ?a ?b) ?c)"),
    ("mul-assoc-rev",   "(* (* ?a ?b) ?c)",          "(* ?a (* ?b ?c))"),
    ("mul-one",         "(* 1 ?a)",                  "?a"),
    ("factor",          "(+ (* ?a ?b) (* ?a ?c))",   "(* ?a (+ ?b ?c))"),
    ("factor-one",      "(+ ?a (* ?a ?c))",          "(* ?a (+ 1 ?c))"),
];

fn rewrites() -> Vec<Rewrite<Coef, Fold>> {
    RULES
        .iter()
        .map(|(name, l, r)| {
            let l: egg::Pattern<Coef> = l.parse().expect("rule pattern");
            let r: egg::Pattern<Coef> = r.parse().expect("rule pattern");
            Rewrite::new(*name, l, r).expect("valid rule")
        })
        .collect()
}

/// Iteration and node limits of one saturation (deterministic, unlike a time limit).
const ITER_LIMIT: usize = 12;
const NODE_LIMIT: usize = 20_000;

/// Size of an expression, with ties broken towards fewer additions.
struct Size;

impl CostFunction<Coef> for Size {
    type Cost = (usize, usize);

    fn cost<C>(&mut self, enode: &Coef, mut costs: C) -> Self::Cost
    where
        C: FnMut(Id) -> Self::Cost,
    {
        let own = match enode {
            Coef::Add(_) => (1, 1),
            // a number costs its written length a little
            Coef::Num(n) if n.is_one() || *n == -BigRational::one() => (1, 0),
            _ => (1, 0),
        };
        enode.fold(own, |acc, id| {
            let c = costs(id);
            (acc.0 + c.0, acc.1 + c.1)
        })
    }
}

/// Builds the ring expression of `e`; tensor terms become leaves `T0, T1, …`.
fn build(e: &TExpr, syms: &Symbols) -> (RecExpr<Coef>, Vec<Term>) {
    let mut rec = RecExpr::default();
    let mut leaves = Vec::new();
    let mut sum: Option<Id> = None;
    for (t, c) in &e.terms {
        let leaf = rec.add(Coef::Symbol(Symbol::from(format!("T{}", leaves.len()))));
        leaves.push(t.clone());
        for (mono, r) in c.terms() {
            let mut prod = leaf;
            for (s, k) in mono {
                let name = rec.add(Coef::Symbol(Symbol::from(format!(
                    "s{}_{}",
                    s,
                    sanitize(syms.name(*s))
                ))));
                if *k > 0 && *k <= 4 {
                    for _ in 0..*k {
                        prod = rec.add(Coef::Mul([name, prod]));
                    }
                } else {
                    let kk = rec.add(Coef::Num(BigRational::from_integer((*k).into())));
                    let p = rec.add(Coef::Pow([name, kk]));
                    prod = rec.add(Coef::Mul([p, prod]));
                }
            }
            if !r.is_one() {
                let n = rec.add(Coef::Num(r.clone()));
                prod = rec.add(Coef::Mul([n, prod]));
            }
            sum = Some(match sum {
                None => prod,
                Some(s) => rec.add(Coef::Add([s, prod])),
            });
        }
    }
    if sum.is_none() {
        rec.add(Coef::Num(BigRational::zero()));
    }
    (rec, leaves)
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_alphanumeric() { c } else { '_' })
        .collect()
}

/// The smallest equivalent form of `e`, as a tree over [`Node`]s.
pub fn compact(e: &TExpr, syms: &Symbols) -> Option<(Node, Vec<Term>)> {
    if e.len() < 2 && e.terms.values().all(|c| c.len() < 2) {
        return None;
    }
    let (rec, leaves) = build(e, syms);
    let runner = Runner::<Coef, Fold, ()>::default()
        .with_iter_limit(ITER_LIMIT)
        .with_node_limit(NODE_LIMIT)
        .with_time_limit(std::time::Duration::from_secs(3600))
        .with_expr(&rec)
        .run(&rewrites());
    let extractor = Extractor::new(&runner.egraph, Size);
    let (_, best) = extractor.find_best(runner.roots[0]);
    Some((to_node(&best, Id::from(best.as_ref().len() - 1)), leaves))
}

/// A plain tree of the extracted expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Sum(Vec<Node>),
    Product(Vec<Node>),
    Num(BigRational),
    /// A scalar symbol with its exponent.
    Power(Sym, i32),
    /// Tensor leaf number.
    Leaf(usize),
}

fn to_node(rec: &RecExpr<Coef>, id: Id) -> Node {
    match &rec[id] {
        Coef::Num(n) => Node::Num(n.clone()),
        Coef::Symbol(s) => leaf_or_symbol(s.as_str(), 1),
        Coef::Pow([a, k]) => {
            let k = match &rec[*k] {
                Coef::Num(n) => n.to_integer().to_i32().unwrap_or(1),
                _ => 1,
            };
            match &rec[*a] {
                Coef::Symbol(s) => leaf_or_symbol(s.as_str(), k),
                _ => to_node(rec, *a),
            }
        }
        Coef::Add([a, b]) => {
            let mut items = Vec::new();
            for n in [to_node(rec, *a), to_node(rec, *b)] {
                match n {
                    Node::Sum(v) => items.extend(v),
                    other => items.push(other),
                }
            }
            Node::Sum(items)
        }
        Coef::Mul([a, b]) => {
            let mut items = Vec::new();
            for n in [to_node(rec, *a), to_node(rec, *b)] {
                match n {
                    Node::Product(v) => items.extend(v),
                    other => items.push(other),
                }
            }
            Node::Product(items)
        }
    }
}

fn leaf_or_symbol(name: &str, k: i32) -> Node {
    if let Some(n) = name.strip_prefix('T') {
        return Node::Leaf(n.parse().unwrap_or(0));
    }
    let id = name
        .strip_prefix('s')
        .and_then(|r| r.split('_').next())
        .and_then(|n| n.parse::<Sym>().ok())
        .unwrap_or(0);
    Node::Power(id, k)
}

/// Evaluates a rule pattern with values for its variables and symbols (for checks).
#[cfg(test)]
fn eval_pattern(pattern: &str, vars: &std::collections::HashMap<String, f64>) -> f64 {
    let p: egg::Pattern<Coef> = pattern.parse().expect("pattern");
    let ast = &p.ast;
    let mut vals: Vec<f64> = Vec::with_capacity(ast.as_ref().len());
    for node in ast.as_ref() {
        let v = match node {
            egg::ENodeOrVar::Var(v) => vars[&v.to_string()],
            egg::ENodeOrVar::ENode(n) => match n {
                Coef::Num(r) => r.to_f64().unwrap_or(f64::NAN),
                Coef::Symbol(s) => vars.get(s.as_str()).copied().unwrap_or(0.5),
                Coef::Add([a, b]) => vals[usize::from(*a)] + vals[usize::from(*b)],
                Coef::Mul([a, b]) => vals[usize::from(*a)] * vals[usize::from(*b)],
                Coef::Pow([a, b]) => vals[usize::from(*a)].powi(vals[usize::from(*b)] as i32),
            },
        };
        vals.push(v);
    }
    *vals.last().expect("non-empty pattern")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Every rule holds at random points (ruler's check).
    #[test]
    fn rules_preserve_value() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % 2000) as f64 / 1000.0 - 1.0
        };
        for (name, l, r) in RULES {
            for _ in 0..50 {
                let vars: HashMap<String, f64> = ["?a", "?b", "?c"]
                    .iter()
                    .map(|v| (v.to_string(), rnd()))
                    .collect();
                let (x, y) = (eval_pattern(l, &vars), eval_pattern(r, &vars));
                assert!(
                    (x - y).abs() <= 1e-12 * (1.0 + x.abs()),
                    "rule {name}: {x} != {y}"
                );
            }
        }
    }

    #[test]
    fn rules_parse() {
        assert_eq!(rewrites().len(), RULES.len());
    }
}
