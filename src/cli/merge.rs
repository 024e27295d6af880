//! `smelt merge`: the parts of a sharded `verify` or `escape` run, read, checked and
//! merged into the single run's report.

use crate::cli::console::{read, Outcome, ReadError};
use smelt::experiment::{escape, shard, verify};
use std::path::{Path, PathBuf};

fn fail(msg: impl std::fmt::Display) -> Outcome {
    eprintln!("error: {msg}");
    Outcome::Usage
}

pub fn run(paths: &[PathBuf], json: bool, plot: Option<&Path>) -> Outcome {
    // The plot's file is opened first: a path that cannot be written is said at once.
    let plot_file = match plot {
        Some(path) => match std::fs::File::create(path) {
            Ok(f) => Some((path.to_path_buf(), f)),
            Err(e) => return fail(format!("cannot write `{}`: {e}", path.display())),
        },
        None => None,
    };
    let mut texts = Vec::new();
    for path in paths {
        if path.is_dir() {
            return fail(format!(
                "`{}` is a directory; give the parts' files, e.g. `{}/part-*.json`",
                path.display(),
                path.display()
            ));
        }
        // Parts are JSON of any size (an escape part holds every exit time): read whole.
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                return match read(path) {
                    Err(ReadError::Usage(m)) => fail(m),
                    _ => fail(format!("cannot read `{}`: {e}", path.display())),
                }
            }
        };
        texts.push((path.display().to_string(), text));
    }
    let mut schemas = Vec::new();
    for (file, text) in &texts {
        match shard::schema(file, text) {
            Ok(s) => schemas.push(s),
            Err(e) => return fail(e),
        }
    }
    if let Some(i) = schemas.iter().position(|s| *s != schemas[0]) {
        return fail(format!(
            "`{}` is a `{}`, `{}` a `{}`: merge the parts of one run",
            texts[0].0, schemas[0], texts[i].0, schemas[i]
        ));
    }
    let files: Vec<&str> = texts.iter().map(|(f, _)| f.as_str()).collect();
    if schemas[0] == verify::PART_SCHEMA {
        let parts: Vec<verify::Part> = match parse_all(&texts) {
            Ok(p) => p,
            Err(o) => return o,
        };
        let (prepared, report) = match verify::merge(&files, &parts) {
            Ok(m) => m,
            Err(e) => return shown(&e, &parts[0].origin, &parts[0].run),
        };
        let (path, file) = plot_file.unzip();
        crate::cli::verify::output(json, &prepared, &report, path.as_ref().zip(file))
    } else {
        let parts: Vec<escape::Part> = match parse_all(&texts) {
            Ok(p) => p,
            Err(o) => return o,
        };
        let m = match escape::merge(&files, &parts) {
            Ok(m) => m,
            Err(e) => return shown(&e, &parts[0].origin, &parts[0].run),
        };
        if let Err(o) = crate::cli::escape::print(
            json,
            &m.setup,
            &m.request,
            &m.results,
            &m.fits,
            &m.predictions,
            m.seconds,
        ) {
            return o;
        }
        match plot_file {
            Some((path, file)) => {
                crate::cli::escape::plot(&path, file, &m.setup, &m.results, &m.fits, &m.predictions)
            }
            None => Outcome::Ok,
        }
    }
}

/// Every part of `texts` (file, text) parsed; the first that is not one fails.
fn parse_all<T: serde::de::DeserializeOwned>(
    texts: &[(String, String)],
) -> Result<Vec<T>, Outcome> {
    texts
        .iter()
        .map(|(file, text)| shard::parse(file, text).map_err(fail))
        .collect()
}

/// An error of the merge: a usage error (parts that do not make up one run) or one in
/// the run's files, rendered against the texts the parts carry.
fn shown(e: &smelt::Error, origin: &shard::Origin, run: &shard::Identity) -> Outcome {
    if let smelt::Error::Other(m) = e {
        return fail(m);
    }
    eprint!(
        "{}",
        e.render(
            (&origin.rule_name, &run.rule),
            (&origin.problem_name, &run.problem)
        )
    );
    Outcome::Invalid
}
