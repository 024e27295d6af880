//! LaTeX (`amsmath`): one equation per state variable, in the notation of the papers
//! (`\nabla f`, `\nabla^{2} f`, `\Sigma`, `\|\nabla f\|^{2}`, `\mathrm{d}W_t`), with the
//! same layout decisions as the text output (shared through [`Style`]).

use super::notation::Style;
use super::text::{texpr, Gradient};
use crate::sme::Sme;
use std::fmt::Write;

/// The SME as an `align` environment (with `standalone`, a complete document).
pub fn render(sme: &Sme, standalone: bool) -> String {
    let st = Style::Latex;
    let syms = &sme.symbols;
    let small = sme.small;
    let vars = super::text::Names::of(sme);
    let name = |i: usize| st.name(&vars[i]);
    let mut body = String::new();
    let _ = writeln!(
        body,
        "% SME of {} of weak order {} (smelt); one step = time {}",
        sme.optimizer,
        sme.order,
        super::text::coefficient(st, &sme.time, syms, small).1
    );
    for e in &sme.eliminated {
        let _ = writeln!(
            body,
            "% {} is fast (it relaxes at rate 1 - {} per step) and eliminated: see the notes",
            e.name,
            super::text::coefficient(st, &e.rate, syms, small).1
        );
    }
    // Which states the noise reaches.
    let noisy: Vec<bool> = (0..vars.len())
        .map(|a| {
            sme.diffusion
                .iter()
                .any(|d| (d.rows == a || d.cols == a) && !d.expr.is_zero())
        })
        .collect();
    body.push_str("\\begin{align}\n");
    let mut rows: Vec<String> = Vec::new();
    for (a, b) in sme.drift.iter().enumerate() {
        if sme.clock == Some(a) {
            continue;
        }
        let noise = if noisy[a] {
            format!(" + \\sigma_{{{}}} \\, \\mathrm{{d}}W_t", name(a))
        } else {
            String::new()
        };
        let drift = texpr(st, b, syms, small, &vars);
        rows.push(format!(
            "  \\mathrm{{d}}{}_t &= {} \\, \\mathrm{{d}}t{noise}",
            name(a),
            st.paren(&drift)
        ));
        if a == 0 {
            if let Some(g) = Gradient::of(sme, b) {
                rows.push(format!(
                    "  &= {} \\, \\mathrm{{d}}t{noise}",
                    st.paren(&g.render(st, sme, &vars))
                ));
            }
        }
    }
    for d in &sme.diffusion {
        if d.expr.is_zero() {
            continue;
        }
        let lhs = format!(
            "\\sigma_{{{}}} \\sigma_{{{}}}^{{\\top}}",
            name(d.rows),
            name(d.cols)
        );
        rows.push(format!(
            "  {lhs} &= {}",
            texpr(st, &d.expr, syms, small, &vars)
        ));
    }
    body.push_str(&rows.join(", \\\\\n"));
    body.push_str(".\n\\end{align}\n");
    if let Some(c) = sme.clock {
        let _ = writeln!(
            body,
            "% {} is time: the step counter is k = {}/({})",
            vars[c],
            vars[c],
            super::text::coefficient(Style::Text, &sme.time, syms, small).1
        );
    }
    if sme.diffusion_from_next_order {
        let _ = writeln!(
            body,
            "% order {} does not constrain the diffusion; shown is the leading diffusion that order {} forces",
            sme.order,
            sme.order + 1
        );
    }
    for c in &sme.conditions {
        let _ = writeln!(
            body,
            "% order {} needs a vanishing residual at power {} of the moment over {:?}: {}",
            c.needed_for_order,
            c.power,
            c.vars.iter().map(|&v| vars[v].as_str()).collect::<Vec<_>>(),
            texpr(st, &c.residual, syms, small, &vars)
        );
    }
    if !standalone {
        return body;
    }
    document(
        &format!(
            "Stochastic modified equation of \\texttt{{{}}}, weak order {}, derived by smelt.",
            escape_text(&sme.optimizer),
            sme.order
        ),
        &body,
    )
}

/// A complete document: a sentence (LaTeX text), then `body`.
pub(super) fn document(sentence: &str, body: &str) -> String {
    format!(
        "\\documentclass{{article}}\n\\usepackage{{amsmath,amssymb}}\n\\begin{{document}}\n\\noindent {sentence}\n\n{body}\\end{{document}}\n"
    )
}

/// Escapes text for use outside math mode.
pub(super) fn escape_text(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '_' | '&' | '%' | '$' | '#' | '{' | '}' => format!("\\{c}"),
            c => c.to_string(),
        })
        .collect()
}
