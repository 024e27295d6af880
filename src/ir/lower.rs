//! Name resolution, scalings, versions and shapes.

use super::*;
use crate::error::diagnostic::{Code, Diagnostic};
use crate::syntax::{self, ExprKind as Ast, File, ItemKind};
use num_traits::{One, Signed, ToPrimitive, Zero};
use std::collections::HashMap;

/// At most this many diagnostics are reported for one file.
const MAX_DIAGNOSTICS: usize = 20;

/// Lowers a parsed file to the IR, or returns every problem found.
pub fn lower(file: &File) -> Result<Optimizer, Vec<Diagnostic>> {
    let mut l = Lowerer::default();
    let result = l.run(file);
    if l.diags.is_empty() {
        Ok(result.expect("no diagnostics means the rule lowered"))
    } else {
        l.diags.truncate(MAX_DIAGNOSTICS);
        Err(l.diags)
    }
}

/// What a name stands for.
#[derive(Debug, Clone)]
enum Binding {
    Param,
    State(Shape),
    Small,
    Hyper,
    Scaling(Expr),
    Noise,
    Counter,
    Local(Shape),
}

impl Binding {
    fn what(&self) -> &'static str {
        match self {
            Binding::Param => "the parameter",
            Binding::State(_) => "a state",
            Binding::Small => "the small parameter",
            Binding::Hyper => "a hyperparameter",
            Binding::Scaling(_) => "a scaling",
            Binding::Noise => "a noise sample",
            Binding::Counter => "the step counter",
            Binding::Local(_) => "a value of the step",
        }
    }
}

/// Marks an expression whose error has already been reported.
struct Reported;

type Lowered = Result<Expr, Reported>;

#[derive(Default)]
struct Lowerer {
    diags: Vec<Diagnostic>,
    names: HashMap<String, (Binding, Span)>,
    /// Every `let` in the file, to say "defined later" for a forward reference.
    all_lets: HashMap<String, Span>,
    /// Variables already updated in the step, with the update's span.
    updated: HashMap<String, Span>,
    /// Noise samples read somewhere.
    noise_used: HashMap<String, bool>,
    param: Option<String>,
    /// Names whose declaration failed: later uses are not reported again.
    poisoned: std::collections::HashSet<String>,
}

fn scalar(kind: ExprKind) -> Expr {
    Expr::new(kind, Shape::Scalar)
}

fn boxed(e: Expr) -> Box<Expr> {
    Box::new(e)
}

impl Lowerer {
    fn error(&mut self, d: Diagnostic) -> Reported {
        self.diags.push(d);
        Reported
    }

    fn declare(&mut self, name: &syntax::Ident, binding: Binding) -> bool {
        let ok = self.try_declare(name, binding);
        if !ok && !self.names.contains_key(&name.name) {
            self.poisoned.insert(name.name.clone());
        }
        ok
    }

    fn try_declare(&mut self, name: &syntax::Ident, binding: Binding) -> bool {
        if syntax_keyword(&name.name) {
            unreachable!("the grammar excludes keywords from names");
        }
        if BUILTIN_NAMES.contains(&name.name.as_str()) {
            let what = if name.name == "f" {
                "the objective".to_string()
            } else {
                format!("the built-in function `{}`", name.name)
            };
            self.error(
                Diagnostic::new(
                    Code::Redeclared,
                    name.span,
                    format!("`{}` is {what} and cannot be declared", name.name),
                )
                .label("reserved name")
                .hint("choose another name"),
            );
            return false;
        }
        if let Some((prev, prev_span)) = self.names.get(&name.name) {
            let what = prev.what();
            let prev_span = *prev_span;
            self.error(
                Diagnostic::new(
                    Code::Redeclared,
                    name.span,
                    format!("`{}` is already declared as {what}", name.name),
                )
                .label("declared again here")
                .secondary(prev_span, "first declared here")
                .hint("give each name one meaning; rename one of them"),
            );
            return false;
        }
        self.names.insert(name.name.clone(), (binding, name.span));
        true
    }

    fn run(&mut self, file: &File) -> Option<Optimizer> {
        // Pass 1: declarations, in any order.
        let mut param: Option<Decl> = None;
        let mut small: Option<Decl> = None;
        let mut counter: Option<Decl> = None;
        let mut time_item: Option<(&syntax::Expr, Span)> = None;
        let mut states = Vec::new();
        let mut hypers = Vec::new();
        let mut noises = Vec::new();
        for item in &file.items {
            match &item.kind {
                ItemKind::Param(name) => {
                    if let Some(prev) = &param {
                        let prev_span = prev.span;
                        self.poisoned.insert(name.name.clone());
                        self.error(
                            Diagnostic::new(Code::Declaration, item.span, "a second `param` declaration")
                                .label("second parameter")
                                .secondary(prev_span, "the parameter is declared here")
                                .hint("an optimizer has one parameter vector; declare the others as `state`"),
                        );
                    } else if self.declare(name, Binding::Param) {
                        param = Some(Decl {
                            name: name.name.clone(),
                            span: name.span,
                        });
                    }
                }
                ItemKind::Small(name) => {
                    if let Some(prev) = &small {
                        let prev_span = prev.span;
                        self.error(
                            Diagnostic::new(Code::Declaration, item.span, "a second `small` declaration")
                                .label("second small parameter")
                                .secondary(prev_span, "the small parameter is declared here")
                                .hint("the expansion has one small parameter; declare the others as `hyper` and scale them with `let`"),
                        );
                    } else if self.declare(name, Binding::Small) {
                        small = Some(Decl {
                            name: name.name.clone(),
                            span: name.span,
                        });
                    }
                }
                ItemKind::Counter(name) => {
                    if let Some(prev) = &counter {
                        let prev_span = prev.span;
                        self.error(
                            Diagnostic::new(
                                Code::Declaration,
                                item.span,
                                "a second `counter` declaration",
                            )
                            .label("second counter")
                            .secondary(prev_span, "the counter is declared here")
                            .hint("remove one; the step has one index"),
                        );
                    } else if self.declare(name, Binding::Counter) {
                        counter = Some(Decl {
                            name: name.name.clone(),
                            span: name.span,
                        });
                    }
                }
                ItemKind::State { names, shape } => {
                    let shape = match shape {
                        Some((syntax::StateShape::Scalar, _)) => Shape::Scalar,
                        _ => Shape::Vector,
                    };
                    for n in names {
                        if self.declare(n, Binding::State(shape)) {
                            states.push(StateVar {
                                name: n.name.clone(),
                                shape,
                                span: n.span,
                                timescale: None,
                            });
                        }
                    }
                }
                ItemKind::Hyper { names, constraint } => {
                    for n in names {
                        if self.declare(n, Binding::Hyper) {
                            hypers.push(Hyper {
                                name: n.name.clone(),
                                constraint: constraint.clone(),
                                span: n.span,
                            });
                        }
                    }
                }
                ItemKind::Noise { names, kind, .. } => {
                    for n in names {
                        if self.declare(n, Binding::Noise) {
                            self.noise_used.insert(n.name.clone(), false);
                            noises.push(Noise {
                                name: n.name.clone(),
                                kind: *kind,
                                law: Law::Problem,
                                span: n.span,
                            });
                        }
                    }
                }
                ItemKind::Time(e) => {
                    if let Some((_, prev_span)) = time_item {
                        self.error(
                            Diagnostic::new(
                                Code::Declaration,
                                item.span,
                                "a second `time` declaration",
                            )
                            .label("second time per step")
                            .secondary(prev_span, "the time per step is declared here")
                            .hint("remove one of them"),
                        );
                    } else {
                        time_item = Some((e, item.span));
                    }
                }
                ItemKind::Let(name, _) => {
                    self.all_lets.entry(name.name.clone()).or_insert(name.span);
                }
                ItemKind::Update(..) | ItemKind::Timescale { .. } => {}
            }
        }
        // `fast v` / `slow v`, once every state is known.
        for item in &file.items {
            let ItemKind::Timescale { names, fast } = &item.kind else {
                continue;
            };
            let (scale, word) = if *fast {
                (Timescale::Fast, "fast")
            } else {
                (Timescale::Slow, "slow")
            };
            for n in names {
                let Some(state) = states.iter_mut().find(|s| s.name == n.name) else {
                    self.error(
                        Diagnostic::new(
                            Code::Declaration,
                            n.span,
                            format!("`{word} {}` names no state", n.name),
                        )
                        .label("not a state of this optimizer")
                        .hint(format!(
                            "`{word}` applies to the rule's states (`state m, v`); the parameter is always slow"
                        )),
                    );
                    continue;
                };
                if let Some((_, prev)) = state.timescale {
                    self.error(
                        Diagnostic::new(
                            Code::Declaration,
                            n.span,
                            format!("a second time scale for `{}`", n.name),
                        )
                        .label("declared again")
                        .secondary(prev, "declared here")
                        .hint("keep one `fast` or `slow` line for it"),
                    );
                    continue;
                }
                state.timescale = Some((scale, item.span));
            }
        }
        let Some(param) = param else {
            self.error(
                Diagnostic::new(Code::Declaration, file.header, "no parameter declared")
                    .label("this optimizer has no `param`")
                    .hint("declare the parameter vector, e.g. `param x`, and write its update"),
            );
            return None;
        };
        self.param = Some(param.name.clone());
        let small_decl = match small {
            Some(s) => Some(s),
            None => {
                self.error(
                    Diagnostic::new(
                        Code::Declaration,
                        file.header,
                        "no small parameter declared",
                    )
                    .label("this optimizer has no `small` declaration")
                    .hint(
                        "declare the learning rate (or the step of the expansion) with `small eta`",
                    ),
                );
                None
            }
        };

        // Pass 2: the step, in order.
        let mut scalings = Vec::new();
        let mut steps = Vec::new();
        let mut time: Option<Expr> = None;
        let mut time_span = file.header;
        for item in &file.items {
            match &item.kind {
                ItemKind::Let(name, e) => {
                    let Ok(expr) = self
                        .expr(e)
                        .map(laurent::normalize)
                        .and_then(|x| self.bounded(x, e.span))
                    else {
                        // Keep the name known, so that later uses do not cascade.
                        self.names
                            .entry(name.name.clone())
                            .or_insert((Binding::Local(Shape::Scalar), name.span));
                        continue;
                    };
                    if expr.depends_on_step() {
                        if self.declare(name, Binding::Local(expr.shape)) {
                            steps.push(Step {
                                target: Target::Local(name.name.clone()),
                                expr,
                                span: item.span,
                            });
                        }
                    } else if self.declare(name, Binding::Scaling(expr.clone())) {
                        scalings.push(Scaling {
                            name: name.name.clone(),
                            expr,
                            span: item.span,
                        });
                    }
                }
                ItemKind::Update(name, e) => {
                    // An update of a name declared nowhere is reported once; the name
                    // is then poisoned so that its uses are not reported again.
                    if !self.names.contains_key(&name.name)
                        && !self.poisoned.contains(&name.name)
                        && !self.all_lets.contains_key(&name.name)
                    {
                        self.update(name, Err(Reported), item.span);
                        self.poisoned.insert(name.name.clone());
                        continue;
                    }
                    let expr = self
                        .expr(e)
                        .map(laurent::normalize)
                        .and_then(|x| self.bounded(x, e.span));
                    if let Some(step) = self.update(name, expr, item.span) {
                        steps.push(step);
                    }
                }
                ItemKind::Noise {
                    names,
                    kind,
                    law: Some(law),
                } => {
                    if let Some(law) = self.law(*kind, law) {
                        for n in noises
                            .iter_mut()
                            .filter(|n| names.iter().any(|m| m.name == n.name))
                        {
                            n.law = law.clone();
                        }
                    }
                }
                ItemKind::Time(e) => {
                    if let Ok(t) = self.expr(e).map(laurent::normalize) {
                        let small = small_decl.as_ref().map(|s| s.name.as_str());
                        time = self.check_time(t, e.span, small, &hypers);
                        time_span = e.span;
                    }
                }
                _ => {}
            }
        }

        // Everything declared must be used as declared (reported only when nothing else
        // went wrong: a failed statement leaves its variables looking unused).
        let clean = self.diags.is_empty();
        for var in std::iter::once((&param.name, param.span, "parameter"))
            .chain(states.iter().map(|s| (&s.name, s.span, "state")))
        {
            if clean && !self.updated.contains_key(var.0) {
                let (name, span, what) = var;
                self.error(
                    Diagnostic::new(
                        Code::NeverUpdated,
                        span,
                        format!("{what} `{name}` is declared but never updated"),
                    )
                    .label("declared here")
                    .hint(if what == "parameter" {
                        format!("write the update of the parameter, e.g. `{name} = {name} - eta*(grad f({name}) + xi)`")
                    } else {
                        format!("add an update such as `{name} = …`, or remove `{name}` from the `state` list")
                    }),
                );
            }
        }
        for n in &noises {
            if clean && self.noise_used.get(&n.name) == Some(&false) {
                self.error(
                    Diagnostic::new(
                        Code::Misuse,
                        n.span,
                        format!("noise `{}` is declared but never used", n.name),
                    )
                    .label("declared here")
                    .hint(format!(
                        "add it to a gradient, e.g. `grad f({}) + {}`, or remove the declaration",
                        param.name, n.name
                    )),
                );
            }
        }

        let small = small_decl?;
        if !self.diags.is_empty() {
            return None;
        }
        Some(Optimizer {
            name: file.name.name.clone(),
            param,
            states,
            small,
            hypers,
            scalings,
            time: time.unwrap_or_else(|| scalar(ExprKind::Small)),
            time_span,
            noises,
            counter,
            steps,
            header: file.header,
        })
    }

    /// Rejects an expression that substitution made too large.
    fn bounded(&mut self, e: Expr, span: Span) -> Lowered {
        let n = node_count(&e);
        if n > MAX_NODES {
            return Err(self.error(
                Diagnostic::new(
                    Code::TooLarge,
                    span,
                    format!("this expression grows to {n} nodes once the scalings are substituted (the limit is {MAX_NODES})"),
                )
                .label("too large")
                .hint("write the scaling in closed form, e.g. `eta^8` rather than repeated squaring"),
            ));
        }
        Ok(e)
    }

    /// The covariance written in a noise declaration, `I` or a constant times `I`.
    fn law(&mut self, kind: NoiseKind, law: &syntax::Expr) -> Option<Law> {
        if kind == NoiseKind::General {
            self.error(
                Diagnostic::new(
                    Code::Misuse,
                    law.span,
                    "a covariance given for general noise",
                )
                .label("a fixed covariance")
                .hint("a sample with a covariance of its own is Gaussian: write `noise z ~ gaussian(s^2*I)`"),
            );
            return None;
        }
        let Some(scale) = identity_multiple(law) else {
            self.error(
                Diagnostic::new(
                    Code::Misuse,
                    law.span,
                    "a noise covariance smelt does not read",
                )
                .label("not a multiple of the identity")
                .hint("write the covariance as `I` or a constant times `I`, e.g. `gaussian(2*T*I)`; leave the parentheses out for the problem's covariance Σ(x)"),
            );
            return None;
        };
        let scale = match scale {
            None => Expr::new(ExprKind::Num(BigRational::one()), Shape::Scalar),
            Some(e) => {
                let lowered = self.expr(&e).map(laurent::normalize).ok()?;
                if lowered.depends_on_step() || lowered.shape != Shape::Scalar {
                    self.error(
                        Diagnostic::new(
                            Code::Misuse,
                            e.span,
                            "the covariance of a noise sample must be a constant times `I`",
                        )
                        .label("this is not a constant of the hyperparameters")
                        .hint("write it in the small parameter and the hyperparameters, e.g. `gaussian(2*eta/beta*I)`"),
                    );
                    return None;
                }
                if let ExprKind::Num(n) = &lowered.kind {
                    if !n.is_positive() {
                        self.error(
                            Diagnostic::new(
                                Code::BadNumber,
                                e.span,
                                "a covariance that is not positive",
                            )
                            .label("this multiple of `I`")
                            .hint("a covariance is positive: write `gaussian(s^2*I)` with s ≠ 0"),
                        );
                        return None;
                    }
                }
                lowered
            }
        };
        Some(Law::Isotropic(scale))
    }

    fn check_time(
        &mut self,
        t: Expr,
        span: Span,
        small: Option<&str>,
        hypers: &[Hyper],
    ) -> Option<Expr> {
        if t.depends_on_step() {
            self.error(
                Diagnostic::new(Code::Misuse, span, "the time per step must be a constant")
                    .label("this depends on the state, the noise or the step")
                    .hint("write it in the small parameter and the hyperparameters, e.g. `time eta^2`"),
            );
            return None;
        }
        if !t.mentions_small() {
            self.error(
                Diagnostic::new(
                    Code::Misuse,
                    span,
                    "the time per step must vanish with the small parameter",
                )
                .label("this does not mention the small parameter")
                .hint(
                    "write it as a power of the small parameter, e.g. `time eta` or `time eta^2`",
                ),
            );
            return None;
        }
        if t.shape != Shape::Scalar {
            self.error(
                Diagnostic::new(Code::Shape, span, "the time per step must be a scalar")
                    .label(format!("this is {}", t.shape.article())),
            );
            return None;
        }
        let problem = laurent::terms(&t)
            .and_then(|terms| time_form(&terms, span, small.unwrap_or("eta"), hypers));
        if let Some(d) = problem {
            self.error(d);
            return None;
        }
        Some(t)
    }

    fn update(&mut self, name: &syntax::Ident, expr: Lowered, span: Span) -> Option<Step> {
        let shape = match self.names.get(&name.name) {
            Some((Binding::Param, _)) => Shape::Vector,
            Some((Binding::State(s), _)) => *s,
            Some((other, decl)) => {
                let (what, decl) = (other.what(), *decl);
                self.error(
                    Diagnostic::new(
                        Code::UndeclaredUpdate,
                        name.span,
                        format!("cannot update `{}`: it is {what}", name.name),
                    )
                    .label("not the parameter or a state")
                    .secondary(decl, "declared here")
                    .hint(format!(
                        "only the parameter and the states change from step to step; declare `state {}` to make it one",
                        name.name
                    )),
                );
                return None;
            }
            None if self.poisoned.contains(&name.name) => return None,
            None => {
                let suggestion = self.nearest_var(&name.name);
                let hint = match suggestion {
                    Some(s) => format!("did you mean `{s}`? Otherwise declare it with `state {}`, or write `let {} = …` for a value of the step", name.name, name.name),
                    None => format!(
                        "declare it with `state {}`, or write `let {} = …` for a value of the step",
                        name.name, name.name
                    ),
                };
                self.error(
                    Diagnostic::new(
                        Code::UndeclaredUpdate,
                        name.span,
                        format!("update of undeclared name `{}`", name.name),
                    )
                    .label("not declared as the parameter or a state")
                    .hint(hint),
                );
                return None;
            }
        };
        if let Some(first) = self.updated.get(&name.name) {
            let first = *first;
            self.error(
                Diagnostic::new(
                    Code::UpdatedTwice,
                    name.span,
                    format!("`{}` is updated twice in one step", name.name),
                )
                .label("second update")
                .secondary(first, "first updated here")
                .hint(format!(
                    "combine the two into one update, or compute the intermediate value with `let`, e.g. `let {}_half = …`",
                    name.name
                )),
            );
            return None;
        }
        self.updated.insert(name.name.clone(), span);
        let expr = expr.ok()?;
        if expr.shape != shape {
            self.error(
                Diagnostic::new(
                    Code::Shape,
                    span,
                    format!(
                        "`{}` is {} but its update is {}",
                        name.name,
                        shape.article(),
                        expr.shape.article()
                    ),
                )
                .label("shapes differ")
                .hint(match (shape, expr.shape) {
                    (Shape::Vector, Shape::Scalar) => {
                        "scalars do not turn into vectors on assignment; multiply by a vector, e.g. `c*x`".to_string()
                    }
                    (Shape::Scalar, Shape::Vector) => {
                        format!("declare it with `state {}` (a vector), or reduce the vector with `dot` or `norm`", name.name)
                    }
                    _ => "apply the matrix to a vector with `@`".to_string(),
                }),
            );
            return None;
        }
        Some(Step {
            target: Target::Var(name.name.clone()),
            expr,
            span,
        })
    }

    /// The declared name closest to `name`, for "did you mean" hints.
    fn nearest(&self, name: &str, filter: impl Fn(&Binding) -> bool) -> Option<String> {
        let mut best: Option<(usize, &String)> = None;
        for (cand, (b, _)) in &self.names {
            if !filter(b) {
                continue;
            }
            let d = strsim::damerau_levenshtein(name, cand);
            let limit = name.chars().count().max(cand.chars().count()) / 3;
            if limit == 0 {
                continue;
            }
            if d <= limit && best.is_none_or(|(bd, bn)| (d, cand) < (bd, bn)) {
                best = Some((d, cand));
            }
        }
        best.map(|(_, n)| n.clone())
    }

    fn nearest_var(&self, name: &str) -> Option<String> {
        self.nearest(name, |b| matches!(b, Binding::Param | Binding::State(_)))
    }

    fn expr(&mut self, e: &syntax::Expr) -> Lowered {
        let span = e.span;
        match &e.kind {
            Ast::Number(n) => Ok(scalar(ExprKind::Num(n.clone()))),
            Ast::Name(name) => self.name(name, span),
            Ast::Index { .. } | Ast::List(_) => Err(self.error(
                Diagnostic::new(
                    Code::Misuse,
                    span,
                    "components and literal vectors belong in problem files, not in an update rule",
                )
                .label("written in d dimensions, the rule cannot pick a component")
                .hint("write the rule with vector operations (`x - eta*g`, `dot(a, b)`); put concrete vectors in a problem file"),
            )),
            Ast::Unary(op, a) => {
                let a = self.expr(a)?;
                match op {
                    syntax::UnOp::Plus => Ok(a),
                    syntax::UnOp::Neg => Ok(match a.kind {
                        ExprKind::Num(n) => scalar(ExprKind::Num(-n)),
                        _ => {
                            let shape = a.shape;
                            Expr::new(ExprKind::Neg(boxed(a)), shape)
                        }
                    }),
                }
            }
            Ast::Binary(op, a, b) => {
                let (a, b) = (self.expr(a), self.expr(b));
                let (a, b) = (a?, b?);
                self.binary(*op, a, b, span)
            }
            Ast::Call { func, args } => self.call(func, args, span),
            Ast::Grad { objective, at } | Ast::Hess { objective, at } => {
                let is_grad = matches!(e.kind, Ast::Grad { .. });
                self.objective(objective)?;
                let at = self.point(at, if is_grad { "grad" } else { "hess" })?;
                Ok(if is_grad {
                    Expr::new(ExprKind::Grad(boxed(at)), Shape::Vector)
                } else {
                    Expr::new(ExprKind::Hess(boxed(at)), Shape::Matrix)
                })
            }
        }
    }

    fn objective(&mut self, objective: &syntax::Ident) -> Result<(), Reported> {
        if objective.name == "f" {
            return Ok(());
        }
        Err(self.error(
            Diagnostic::new(
                Code::Undefined,
                objective.span,
                format!("unknown objective `{}`", objective.name),
            )
            .label("not the objective")
            .hint("the objective is always called `f`: write `grad f(…)`, `hess f(…)` or `f(…)`"),
        ))
    }

    /// A point at which f, its derivatives or the noise are evaluated: a vector.
    fn point(&mut self, at: &syntax::Expr, what: &str) -> Lowered {
        let p = self.expr(at)?;
        if p.shape != Shape::Vector {
            return Err(self.error(
                Diagnostic::new(
                    Code::Shape,
                    at.span,
                    format!("`{what}` takes a point, a vector, but this is {}", p.shape.article()),
                )
                .label(format!("{} here", p.shape.article()))
                .hint({
                    let call = match what {
                        "grad" => "grad f",
                        "hess" => "hess f",
                        other => other,
                    };
                    format!("evaluate at a point of the parameter space, e.g. `{call}(x)` or `{call}(x + mu*v)`")
                }),
            ));
        }
        Ok(p)
    }

    fn name(&mut self, name: &str, span: Span) -> Lowered {
        let Some((binding, _)) = self.names.get(name) else {
            return Err(self.undefined(name, span));
        };
        Ok(match binding.clone() {
            Binding::Param => self.var(name, Shape::Vector, None),
            Binding::State(shape) => self.var(name, shape, None),
            Binding::Small => scalar(ExprKind::Small),
            Binding::Hyper => scalar(ExprKind::Hyper(name.to_string())),
            Binding::Scaling(e) => e,
            Binding::Counter => scalar(ExprKind::Counter),
            Binding::Local(shape) => Expr::new(ExprKind::Local(name.to_string()), shape),
            Binding::Noise => {
                self.noise_used.insert(name.to_string(), true);
                Expr::new(
                    ExprKind::Noise {
                        sample: name.to_string(),
                        at: None,
                    },
                    Shape::Vector,
                )
            }
        })
    }

    /// A read of the parameter or a state; `forced` is `Some(Old)` for `old(v)`.
    fn var(&self, name: &str, shape: Shape, forced: Option<Version>) -> Expr {
        let version = forced.unwrap_or(if self.updated.contains_key(name) {
            Version::New
        } else {
            Version::Old
        });
        Expr::new(
            ExprKind::Var {
                name: name.to_string(),
                version,
            },
            shape,
        )
    }

    fn undefined(&mut self, name: &str, span: Span) -> Reported {
        if self.poisoned.contains(name) {
            return Reported;
        }
        let hint = if let Some(def) = self.all_lets.get(name) {
            let _ = def;
            Some(format!(
                "`{name}` is defined by a `let` further down; move that line above this one"
            ))
        } else if ["noise", "ξ", "xi", "zeta", "ζ", "z", "w"].contains(&name) {
            Some(format!("if `{name}` is the gradient noise, declare it first, e.g. `noise {name} ~ gaussian`, then write `grad f(x) + {name}`; else declare it, e.g. `hyper {name} > 0`"))
        } else if ["k", "t", "n", "step", "iter", "iteration"].contains(&name) {
            Some(format!("if `{name}` is the step index (as in a bias correction `1 - beta^({name}+1)`), declare `counter {name}` (0 at the first step); else declare it, e.g. `hyper {name} > 0`"))
        } else {
            self.nearest(name, |_| true)
                .or_else(|| {
                    BUILTIN_NAMES
                        .iter()
                        .find(|b| {
                            **b != name
                                && strsim::damerau_levenshtein(name, b) <= 1
                                && name.len() > 2
                        })
                        .map(|b| b.to_string())
                })
                .map(|s| format!("did you mean `{s}`?"))
                .or_else(|| {
                    Some(format!(
                        "declare it, e.g. `hyper {name} > 0`, or define it with `let {name} = …`"
                    ))
                })
        };
        let mut d = Diagnostic::new(Code::Undefined, span, format!("undefined name `{name}`"))
            .label("not defined")
            .maybe_hint(hint);
        if let Some(def) = self.all_lets.get(name) {
            d = d.secondary(*def, "defined here");
        }
        self.error(d)
    }

    fn call(&mut self, func: &syntax::Ident, args: &[syntax::Expr], span: Span) -> Lowered {
        let fname = func.name.as_str();
        let arity = |me: &mut Lowerer, n: usize| -> Result<(), Reported> {
            if args.len() == n {
                Ok(())
            } else {
                Err(me.error(
                    Diagnostic::new(
                        Code::Misuse,
                        span,
                        format!(
                            "`{fname}` takes {n} argument{}, found {}",
                            if n == 1 { "" } else { "s" },
                            args.len()
                        ),
                    )
                    .label("wrong number of arguments")
                    .hint(match fname {
                        "dot" => "write `dot(a, b)` with two vectors",
                        "f" => "write `f(x)`: the objective at one point",
                        "old" => "write `old(v)` with the name of a state",
                        "min" | "max" => "write `max(a, b)`: two scalars or vectors, a scalar broadcast against a vector",
                        "clip" => "write `clip(v, lo, hi)`: the value and its two bounds, lo ≤ hi",
                        _ => "these functions take one argument, as in `sqrt(v)`",
                    }),
                ))
            }
        };
        if fname == "f" {
            arity(self, 1)?;
            let at = self.point(&args[0], "f")?;
            return Ok(scalar(ExprKind::Objective(boxed(at))));
        }
        if fname == "old" {
            arity(self, 1)?;
            let a = &args[0];
            let target = match &a.kind {
                Ast::Name(n) => match self.names.get(n) {
                    Some((Binding::Param, _)) => Some((n.clone(), Shape::Vector)),
                    Some((Binding::State(s), _)) => Some((n.clone(), *s)),
                    _ => None,
                },
                _ => None,
            };
            return match target {
                Some((n, shape)) => Ok(self.var(&n, shape, Some(Version::Old))),
                None => Err(self.error(
                    Diagnostic::new(
                        Code::Misuse,
                        a.span,
                        "`old` takes the name of the parameter or a state",
                    )
                    .label("not the parameter or a state")
                    .hint("write `old(v)` to read the value `v` had at the start of the step"),
                )),
            };
        }
        if let Some((Binding::Noise, _)) = self.names.get(fname) {
            arity(self, 1)?;
            let at = self.point(&args[0], fname)?;
            self.noise_used.insert(fname.to_string(), true);
            let at = match &at.kind {
                ExprKind::Var {
                    name,
                    version: Version::Old,
                } if Some(name) == self.param.as_ref() => None,
                _ => Some(boxed(at)),
            };
            return Ok(Expr::new(
                ExprKind::Noise {
                    sample: fname.to_string(),
                    at,
                },
                Shape::Vector,
            ));
        }
        let Some(f) = Func::from_name(fname) else {
            if let Some((b, decl)) = self.names.get(fname) {
                let (what, decl) = (b.what(), *decl);
                return Err(self.error(
                    Diagnostic::new(
                        Code::Misuse,
                        func.span,
                        format!("`{fname}` is {what}, not a function"),
                    )
                    .label("called here")
                    .secondary(decl, "declared here")
                    .hint("multiply with `*`: smelt does not read juxtaposition as a product"),
                ));
            }
            let near = FUNCTIONS
                .iter()
                .min_by_key(|b| strsim::damerau_levenshtein(fname, b))
                // Only a near miss (`sqr`, `sing`): `cos` is not a misspelt `log`.
                .filter(|b| {
                    let d = strsim::damerau_levenshtein(fname, b);
                    d == 1 || (d == 2 && fname.len() > 4)
                });
            let all = FUNCTIONS
                .iter()
                .map(|f| format!("`{f}`"))
                .collect::<Vec<_>>()
                .join(", ");
            let problem_only = [
                "sin", "cos", "tanh", "softplus", "sigmoid", "erf", "sum", "mean",
            ];
            let hint = match near {
                Some(b) => format!("did you mean `{b}`? The functions are {all}, and `f` for the objective"),
                None if problem_only.contains(&fname) => format!("`{fname}` is a function of problem files, not of update rules; the functions of an update rule are {all}, and `f`, `grad f`, `hess f` for the objective"),
                None => format!("the functions of an update rule are {all}, and `f`, `grad f`, `hess f` for the objective"),
            };
            return Err(self.error(
                Diagnostic::new(
                    Code::Undefined,
                    func.span,
                    format!("unknown function `{fname}`"),
                )
                .label("not a function")
                .hint(hint),
            ));
        };
        match f {
            Func::Sqrt | Func::Exp | Func::Log | Func::Abs | Func::Sign | Func::Relu => {
                arity(self, 1)?;
                let a = self.expr(&args[0])?;
                if a.shape == Shape::Matrix {
                    return Err(self.error(
                        Diagnostic::new(
                            Code::Shape,
                            args[0].span,
                            format!("`{fname}` acts elementwise on scalars and vectors, not on a matrix"),
                        )
                        .label("a matrix")
                        .hint("apply the matrix to a vector with `@` first"),
                    ));
                }
                if let ExprKind::Num(n) = &a.kind {
                    let bad = match f {
                        Func::Sqrt if n.is_negative() => {
                            Some("the square root of a negative number is not real")
                        }
                        Func::Log if !n.is_positive() => {
                            Some("the logarithm of a non-positive number is not real")
                        }
                        _ => None,
                    };
                    if let Some(msg) = bad {
                        return Err(self.error(
                            Diagnostic::new(Code::BadNumber, args[0].span, msg)
                                .label("this constant")
                                .hint(format!("`{fname}` needs a positive argument here")),
                        ));
                    }
                }
                let shape = a.shape;
                Ok(Expr::new(ExprKind::Call(f, vec![a]), shape))
            }
            Func::Min | Func::Max | Func::Clip => {
                arity(self, if f == Func::Clip { 3 } else { 2 })?;
                let mut vals = Vec::new();
                for a in args {
                    let v = self.expr(a)?;
                    if v.shape == Shape::Matrix {
                        return Err(self.error(
                            Diagnostic::new(
                                Code::Shape,
                                a.span,
                                format!("`{fname}` acts elementwise on scalars and vectors, not on a matrix"),
                            )
                            .label("a matrix")
                            .hint("apply the matrix to a vector with `@` first"),
                        ));
                    }
                    vals.push(v);
                }
                if f == Func::Clip {
                    if let (ExprKind::Num(lo), ExprKind::Num(hi)) = (&vals[1].kind, &vals[2].kind) {
                        if lo > hi {
                            return Err(self.error(
                                Diagnostic::new(
                                    Code::BadNumber,
                                    span,
                                    format!(
                                        "`clip` with a lower bound {lo} above its upper bound {hi}"
                                    ),
                                )
                                .label("empty interval")
                                .hint("write `clip(v, lo, hi)` with lo ≤ hi"),
                            ));
                        }
                    }
                }
                let shape = if vals.iter().any(|v| v.shape == Shape::Vector) {
                    Shape::Vector
                } else {
                    Shape::Scalar
                };
                Ok(Expr::new(ExprKind::Call(f, vals), shape))
            }
            Func::Norm => {
                arity(self, 1)?;
                let a = self.vector_arg(&args[0], fname)?;
                Ok(scalar(ExprKind::Call(f, vec![a])))
            }
            Func::Dot => {
                arity(self, 2)?;
                let a = self.vector_arg(&args[0], fname);
                let b = self.vector_arg(&args[1], fname);
                Ok(scalar(ExprKind::Call(f, vec![a?, b?])))
            }
        }
    }

    fn vector_arg(&mut self, arg: &syntax::Expr, fname: &str) -> Lowered {
        let a = self.expr(arg)?;
        if a.shape != Shape::Vector {
            return Err(self.error(
                Diagnostic::new(
                    Code::Shape,
                    arg.span,
                    format!("`{fname}` takes vectors, but this is {}", a.shape.article()),
                )
                .label(format!("{} here", a.shape.article()))
                .hint(if fname == "dot" {
                    "`dot(a, b)` is the inner product of two vectors; multiply scalars with `*`"
                } else {
                    "`norm(a)` is the Euclidean norm of a vector; for a scalar use `abs`"
                }),
            ));
        }
        Ok(a)
    }

    fn binary(&mut self, op: syntax::BinOp, a: Expr, b: Expr, span: Span) -> Lowered {
        use Shape::*;
        let op = match op {
            syntax::BinOp::Add => BinOp::Add,
            syntax::BinOp::Sub => BinOp::Sub,
            syntax::BinOp::Mul => BinOp::Mul,
            syntax::BinOp::Div => BinOp::Div,
            syntax::BinOp::MatMul => BinOp::MatMul,
            syntax::BinOp::Pow => BinOp::Pow,
        };
        let shape = match (op, a.shape, b.shape) {
            (BinOp::Add | BinOp::Sub, s, t) if s == t => Ok(s),
            (BinOp::Add | BinOp::Sub, Scalar, Vector) | (BinOp::Add | BinOp::Sub, Vector, Scalar) => Ok(Vector),
            (BinOp::Add | BinOp::Sub, Matrix, _) | (BinOp::Add | BinOp::Sub, _, Matrix) => Err((
                format!(
                    "cannot {} {} and {}",
                    if op == BinOp::Add { "add" } else { "subtract" },
                    a.shape.article(),
                    b.shape.article()
                ),
                if a.shape == Scalar || b.shape == Scalar {
                    "a scalar does not broadcast to a matrix; apply the matrix to a vector with `@`"
                } else {
                    "apply the matrix to a vector with `@` first, e.g. `hess f(x) @ v`"
                },
            )),
            (BinOp::Mul, Scalar, s) | (BinOp::Mul, s, Scalar) => Ok(s),
            (BinOp::Mul, Vector, Vector) => Ok(Vector),
            (BinOp::Mul, _, _) => Err((
                format!("cannot multiply {} and {} elementwise", a.shape.article(), b.shape.article()),
                "use `@` for the matrix product, as in `hess f(x) @ v`",
            )),
            (BinOp::Div, s, Scalar) => Ok(s),
            (BinOp::Div, Scalar | Vector, Vector) => Ok(Vector),
            (BinOp::Div, _, Matrix) | (BinOp::Div, Matrix, _) => Err((
                format!("cannot divide {} by {}", a.shape.article(), b.shape.article()),
                "division acts elementwise on scalars and vectors; matrices cannot be inverted here",
            )),
            (BinOp::MatMul, Matrix, Vector) | (BinOp::MatMul, Vector, Matrix) => Ok(Vector),
            (BinOp::MatMul, Matrix, Matrix) => Ok(Matrix),
            (BinOp::MatMul, Vector, Vector) => Err((
                "cannot apply `@` to two vectors".to_string(),
                "write their inner product as `dot(a, b)`, or `a*b` for the elementwise product",
            )),
            (BinOp::MatMul, _, _) => Err((
                format!("`@` takes matrices and vectors, not {}", Scalar.article()),
                "multiply by a scalar with `*`",
            )),
            (BinOp::Pow, Scalar | Vector, Scalar) => Ok(a.shape),
            (BinOp::Pow, Matrix, _) => Err((
                "cannot raise a matrix to a power".to_string(),
                "write matrix products with `@`, e.g. `H @ (H @ v)`",
            )),
            (BinOp::Pow, _, _) => Err((
                format!("the exponent must be a scalar, not {}", b.shape.article()),
                "raise elementwise to a scalar power, e.g. `g^2`",
            )),
            _ => unreachable!(),
        };
        let shape = match shape {
            Ok(s) => s,
            Err((msg, hint)) => {
                return Err(self.error(
                    Diagnostic::new(Code::Shape, span, msg)
                        .label(format!(
                            "{} {} {}",
                            a.shape.article(),
                            bin_symbol(op),
                            b.shape.article()
                        ))
                        .hint(hint),
                ));
            }
        };
        if op == BinOp::Div && !b.depends_on_step() {
            if let ExprKind::Num(n) = laurent::normalize(b.clone()).kind {
                if n.is_zero() {
                    return Err(self.error(
                        Diagnostic::new(Code::BadNumber, span, "division by zero")
                            .label("the divisor is zero")
                            .hint("divide by a non-zero constant"),
                    ));
                }
            }
        }
        if let (ExprKind::Num(x), ExprKind::Num(y)) = (&a.kind, &b.kind) {
            if let Some(folded) = fold(op, x, y).map_err(|msg| {
                self.error(
                    Diagnostic::new(Code::BadNumber, span, msg.clone())
                        .label(if msg.contains("division") { "the divisor is zero" } else { "this constant" })
                        .hint(if msg.contains("division") {
                            "divide by a non-zero constant"
                        } else {
                            "keep constants below about 10^90; declare large scales as hyperparameters"
                        }),
                )
            })? {
                return Ok(scalar(ExprKind::Num(folded)));
            }
        }
        Ok(Expr::new(ExprKind::Bin(op, boxed(a), boxed(b)), shape))
    }
}

fn bin_symbol(op: BinOp) -> &'static str {
    match op {
        BinOp::Add => "+",
        BinOp::Sub => "-",
        BinOp::Mul => "*",
        BinOp::Div => "/",
        BinOp::MatMul => "@",
        BinOp::Pow => "^",
    }
}

/// Folds arithmetic on two constants; `Ok(None)` leaves it symbolic (`2^(1/2)`).
fn fold(op: BinOp, x: &BigRational, y: &BigRational) -> Result<Option<BigRational>, String> {
    let bits = |r: &BigRational| r.numer().bits().max(r.denom().bits());
    let folded = match op {
        BinOp::Add => x + y,
        BinOp::Sub => x - y,
        BinOp::Mul | BinOp::MatMul => x * y,
        BinOp::Div => {
            if y.is_zero() {
                return Err("division by zero".to_string());
            }
            x / y
        }
        BinOp::Pow => {
            if !y.is_integer() {
                return Ok(None);
            }
            let Some(k) = y.to_integer().to_i32().filter(|k| k.abs() <= 4096) else {
                return Err("exponent of a constant too large".to_string());
            };
            if x.is_zero() && k < 0 {
                return Err("zero raised to a negative power".to_string());
            }
            if bits(x).saturating_mul(u64::from(k.unsigned_abs())) > laurent::MAX_BITS {
                return Err("constant too large".to_string());
            }
            if k >= 0 {
                num_traits::pow(x.clone(), k as usize)
            } else {
                BigRational::one() / num_traits::pow(x.clone(), (-k) as usize)
            }
        }
    };
    if bits(&folded) > laurent::MAX_BITS {
        return Err("constant too large".to_string());
    }
    Ok(Some(folded))
}

/// The most nodes an expression may have once the scalings are substituted.
const MAX_NODES: usize = 10_000;

fn node_count(e: &Expr) -> usize {
    let mut n = 0;
    e.walk(&mut |_| n += 1);
    n
}

fn syntax_keyword(name: &str) -> bool {
    crate::syntax::is_keyword(name)
}

/// What is wrong with a time per step in normal form (`c ε^q`, `c` a positive
/// constant, `q ≥ 1`), or `None` when nothing is.
fn time_form(
    terms: &[laurent::Term],
    span: Span,
    small: &str,
    hypers: &[Hyper],
) -> Option<Diagnostic> {
    let Some(q) = terms.iter().map(|t| t.small).min() else {
        return Some(
            Diagnostic::new(Code::Misuse, span, "the time per step must be positive")
                .label("this is zero")
                .hint(format!(
                    "write it as a power of the small parameter, e.g. `time {small}`"
                )),
        );
    };
    if q <= 0 {
        return Some(
            Diagnostic::new(
                Code::Misuse,
                span,
                "the time per step must vanish with the small parameter",
            )
            .label(if q < 0 {
                format!("this grows as `{small}` → 0")
            } else {
                format!("this tends to a non-zero constant as `{small}` → 0")
            })
            .hint(format!(
                "one step is a short time: write it as a positive power of the small parameter, e.g. `time {small}` or `time {small}^2`"
            )),
        );
    }
    if terms.len() > 1 {
        return Some(
            Diagnostic::new(
                Code::Misuse,
                span,
                "the time per step must be a single power of the small parameter",
            )
            .label(format!("this is a sum of {} terms", terms.len()))
            .hint(format!(
                "keep the leading power, e.g. `time {}`; corrections belong in the update rule",
                small_power(small, q)
            )),
        );
    }
    let term = &terms[0];
    let mut negative = term.coef.is_negative();
    let mut unknown = None;
    for (h, k) in &term.hypers {
        if k % 2 == 0 {
            continue;
        }
        match hypers
            .iter()
            .find(|x| &x.name == h)
            .and_then(|x| sign_of(x.constraint.as_ref()))
        {
            Some(positive) => negative ^= !positive,
            None => unknown = unknown.or(Some(h)),
        }
    }
    if let Some(h) = unknown {
        return Some(
            Diagnostic::new(Code::Misuse, span, "the time per step must be positive")
                .label(format!("the sign of `{h}` is not known"))
                .hint(format!("declare `hyper {h} > 0`")),
        );
    }
    negative.then(|| {
        Diagnostic::new(Code::Misuse, span, "the time per step must be positive")
            .label("this is negative")
            .hint(format!(
                "one step moves time forward: write it without the minus sign, e.g. `time {}`",
                small_power(small, q)
            ))
    })
}

/// Whether a constraint makes a hyperparameter positive (`Some(true)`), negative
/// (`Some(false)`), or neither.
fn sign_of(c: Option<&syntax::Constraint>) -> Option<bool> {
    use syntax::{CmpOp, Constraint};
    let zero = BigRational::zero();
    match c? {
        Constraint::Compare(CmpOp::Gt, b) if *b >= zero => Some(true),
        Constraint::Compare(CmpOp::Ge, b) if *b > zero => Some(true),
        Constraint::Compare(CmpOp::Lt, b) if *b <= zero => Some(false),
        Constraint::Compare(CmpOp::Le, b) if *b < zero => Some(false),
        Constraint::Interval { lo, lo_closed, .. }
            if *lo > zero || (lo.is_zero() && !lo_closed) =>
        {
            Some(true)
        }
        Constraint::Interval { hi, hi_closed, .. }
            if *hi < zero || (hi.is_zero() && !hi_closed) =>
        {
            Some(false)
        }
        _ => None,
    }
}

/// `eta`, `eta^2`.
fn small_power(small: &str, q: i32) -> String {
    if q == 1 {
        small.to_string()
    } else {
        format!("{small}^{q}")
    }
}

/// `I`, `c*I`, `I*c` or `I/c`: `Some(None)` for `I` alone, `Some(Some(c))` for a
/// multiple (the factor as an expression), `None` for anything else.
fn identity_multiple(e: &syntax::Expr) -> Option<Option<syntax::Expr>> {
    use syntax::{BinOp as B, ExprKind as K};
    match &e.kind {
        K::Name(n) if n == "I" => Some(None),
        K::Binary(B::Mul, a, b) => {
            let (i, c) = match (identity_multiple(a), identity_multiple(b)) {
                (Some(i), None) => (i, b),
                (None, Some(i)) => (i, a),
                _ => return None,
            };
            Some(Some(match i {
                None => (**c).clone(),
                Some(inner) => syntax::Expr {
                    kind: K::Binary(B::Mul, Box::new(inner), c.clone()),
                    span: e.span,
                },
            }))
        }
        K::Binary(B::Div, a, b) => {
            let i = identity_multiple(a)?;
            let one = syntax::Expr {
                kind: K::Number(BigRational::one()),
                span: a.span,
            };
            Some(Some(syntax::Expr {
                kind: K::Binary(B::Div, Box::new(i.unwrap_or(one)), b.clone()),
                span: e.span,
            }))
        }
        _ => None,
    }
}
