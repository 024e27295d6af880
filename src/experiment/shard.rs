//! Shards of a run (`--shard K/N`): what every part states of the run it belongs to,
//! and the checks that a set of parts makes up one whole run.
//!
//! A run's paths go in blocks, block `b` on stream `b` of the seed. Shard `K` of `N`
//! runs the blocks `⌊(K−1)B/N⌋ .. ⌊KB/N⌋` of the whole run's `B` (contiguous, on the
//! whole run's streams) and stores its sums exactly ([`crate::sim::sum::ExactSum`]); the
//! parts merged are the single run bit for bit. The merge functions are those of each
//! check ([`super::verify::merge`], [`super::escape::merge`]).

use crate::Error;
use std::collections::BTreeMap;

/// Shard `k` of `n` (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Shard {
    pub k: usize,
    pub n: usize,
}

impl Shard {
    /// `K/N` with `1 ≤ K ≤ N`.
    pub fn parse(s: &str) -> Result<Shard, Error> {
        let bad = || {
            Error::Other(format!(
                "`--shard {s}`: write `--shard K/N` with 1 ≤ K ≤ N, e.g. `--shard 2/4`"
            ))
        };
        let (k, n) = s.split_once('/').ok_or_else(bad)?;
        let (k, n): (usize, usize) = (
            k.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        Shard::new(k, n).ok_or_else(bad)
    }

    /// Shard `k` of `n`, when `1 ≤ k ≤ n`.
    pub fn new(k: usize, n: usize) -> Option<Shard> {
        (1 <= k && k <= n && n <= 1 << 20).then_some(Shard { k, n })
    }

    /// This shard's blocks of a run of `blocks` blocks (empty when `n > blocks` leaves
    /// it none).
    pub fn range(&self, blocks: usize) -> std::ops::Range<usize> {
        blocks * (self.k - 1) / self.n..blocks * self.k / self.n
    }
}

/// The run a part belongs to: the rule's and the problem's text, the `--set` values,
/// and every option that changes the numbers. Parts merge only when theirs are equal.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Identity {
    pub rule: String,
    pub problem: String,
    pub set: BTreeMap<String, f64>,
    /// The options, by name (a JSON object).
    pub options: serde_json::Value,
}

/// Where a part's files came from: the names its diagnostics show and the directory of
/// the problem's data files (what `merge` reads them from). Not part of the identity:
/// the shards of one run may run in different directories.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Origin {
    pub rule_name: String,
    pub problem_name: String,
    pub dir: String,
}

/// The two files of a run, as a shard receives them.
#[derive(Debug, Clone)]
pub struct Sources {
    pub origin: Origin,
    pub rule: String,
    pub problem: String,
    pub set: BTreeMap<String, f64>,
}

/// One part read from a file: its name (for messages), shard, identity and origin.
struct Named<'a> {
    file: &'a str,
    shard: Shard,
    run: &'a Identity,
}

/// What every part carries, whatever it ran: its shard and the run's identity.
pub trait Sharded {
    fn shard(&self) -> Shard;
    fn run(&self) -> &Identity;
}

/// Checks that the parts read from `files` (`files[i]` names `parts[i]`) belong to one
/// run and cover its shards `1..N` once each; returns their indices in shard
/// order.
pub fn check_parts<P: Sharded>(files: &[&str], parts: &[P]) -> Result<Vec<usize>, Error> {
    let named: Vec<Named> = files
        .iter()
        .zip(parts)
        .map(|(file, p)| Named {
            file,
            shard: p.shard(),
            run: p.run(),
        })
        .collect();
    check(&named)
}

/// Checks that `parts` belong to one run and cover its shards `1..N` once each; returns
/// their indices in shard order.
fn check(parts: &[Named]) -> Result<Vec<usize>, Error> {
    let Some(first) = parts.first() else {
        return Err(Error::Other(
            "no parts to merge: give the JSON files of `--shard K/N` runs".into(),
        ));
    };
    if let Some(p) = parts
        .iter()
        .find(|p| Shard::new(p.shard.k, p.shard.n).is_none())
    {
        return Err(Error::Other(format!(
            "`{}` says it is shard {}/{}, which no run has: the part was changed",
            p.file, p.shard.k, p.shard.n
        )));
    }
    for p in &parts[1..] {
        if let Some(field) = differs(first.run, p.run) {
            return Err(Error::Other(format!(
                "`{}` is a part of another run than `{}`: its {field} differs; merge the parts of one run (same files, options and seed)",
                p.file, first.file
            )));
        }
        if p.shard.n != first.shard.n {
            return Err(Error::Other(format!(
                "`{}` is shard {}/{}, `{}` shard {}/{}: the parts of one run have the same N",
                p.file, p.shard.k, p.shard.n, first.file, first.shard.k, first.shard.n
            )));
        }
    }
    let n = first.shard.n;
    let mut at: Vec<Option<usize>> = vec![None; n];
    for (i, p) in parts.iter().enumerate() {
        let slot = &mut at[p.shard.k - 1];
        if let Some(j) = slot {
            return Err(Error::Other(format!(
                "`{}` and `{}` are both shard {}/{n}: give each shard once",
                parts[*j].file, p.file, p.shard.k
            )));
        }
        *slot = Some(i);
    }
    let missing: Vec<String> = (1..=n)
        .filter(|k| at[k - 1].is_none())
        .map(|k| format!("{k}/{n}"))
        .collect();
    if !missing.is_empty() {
        return Err(Error::Other(format!(
            "shard{} {} missing: run {} with the same options and merge every part",
            if missing.len() == 1 { " is" } else { "s are" },
            missing.join(", "),
            if missing.len() == 1 { "it" } else { "them" }
        )));
    }
    Ok(at.into_iter().flatten().collect())
}

/// The first field in which two identities differ, in words.
fn differs(a: &Identity, b: &Identity) -> Option<String> {
    if a.rule != b.rule {
        return Some("optimizer file".into());
    }
    if a.problem != b.problem {
        return Some("problem file".into());
    }
    if a.set != b.set {
        return Some("`--set` values".into());
    }
    let (oa, ob) = (a.options.as_object()?, b.options.as_object()?);
    let keys: std::collections::BTreeSet<&String> = oa.keys().chain(ob.keys()).collect();
    keys.into_iter()
        .find(|k| oa.get(*k) != ob.get(*k))
        .map(|k| {
            format!(
                "option `{k}` ({} here, {} there)",
                ob.get(k).map_or("none".into(), ToString::to_string),
                oa.get(k).map_or("none".into(), ToString::to_string)
            )
        })
}

/// A part's JSON text, parsed; the error names the file.
pub fn parse<T: serde::de::DeserializeOwned>(file: &str, text: &str) -> Result<T, Error> {
    serde_json::from_str(text).map_err(|e| {
        Error::Other(format!(
            "`{file}` is not a part of a sharded run ({e}); give the JSON that `--shard K/N` prints"
        ))
    })
}

/// The schema a part's JSON names (`smelt-verify-part` or `smelt-escape-part`).
pub fn schema(file: &str, text: &str) -> Result<String, Error> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        Error::Other(format!(
            "`{file}` is not JSON ({e}); give the JSON that `--shard K/N` prints"
        ))
    })?;
    match v.get("schema").and_then(|s| s.as_str()) {
        Some(s @ ("smelt-verify-part" | "smelt-escape-part")) => Ok(s.to_string()),
        Some(s) => Err(Error::Other(format!(
            "`{file}` is a `{s}` document, not a part of a sharded run; give the JSON that `--shard K/N` prints"
        ))),
        None => Err(Error::Other(format!(
            "`{file}` has no `schema`: not a part of a sharded run; give the JSON that `--shard K/N` prints"
        ))),
    }
}

/// The rule and problem of a part, read again for the merge.
pub fn load(
    origin: &Origin,
    run: &Identity,
) -> Result<(crate::Optimizer, crate::problem::Problem), Error> {
    let rule = crate::check(&run.rule)?;
    let problem = crate::problem::load_in(&run.problem, std::path::Path::new(&origin.dir))
        .map_err(Error::Problem)?;
    Ok((rule, problem))
}
