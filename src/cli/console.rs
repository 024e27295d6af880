//! What every command reads and writes: input files (size-limited, decoded, refused
//! with a diagnostic), stdout that survives a closed pipe and reports a full disk, and
//! how a run ended. The commands (`cli.rs`, `verify_cmd.rs`, `escape_cmd.rs`) read this;
//! it reads none of them.

use smelt::diagnostic::render;
use smelt::{Code, Diagnostic};
use std::io::{Read, Write};
use std::path::Path;

/// How a run ended.
pub(crate) enum Outcome {
    Ok,
    Invalid,
    Usage,
    /// A check ran and found the SME contradicting its derived order (`verify`).
    Contradicted,
}

/// Reads one file for a command, reporting a failure as the command's outcome.
pub(crate) fn load(path: &Path) -> Result<(String, String), Outcome> {
    let shown = path.display().to_string();
    match read(path) {
        Ok(source) => Ok((shown, source)),
        Err(ReadError::Usage(msg)) => {
            eprintln!("error: {msg}");
            Err(Outcome::Usage)
        }
        Err(ReadError::Invalid(d, text)) => {
            eprint!("{}", render(&[*d], &shown, &text));
            Err(Outcome::Invalid)
        }
    }
}

pub(crate) enum ReadError {
    /// The file cannot be read at all.
    Usage(String),
    /// The file is read but is not acceptable text; render against the given text.
    Invalid(Box<Diagnostic>, String),
}

/// Reads a file as UTF-8 text, refusing files over the size limit without reading them.
pub(crate) fn read(path: &Path) -> Result<String, ReadError> {
    let shown = path.display();
    let meta = std::fs::metadata(path)
        .map_err(|e| ReadError::Usage(format!("cannot read `{shown}`: {}", io_reason(&e))))?;
    if meta.is_dir() {
        return Err(ReadError::Usage(format!(
            "`{shown}` is a directory; give optimizer files, e.g. `{shown}/sgd.opt`"
        )));
    }
    let file = std::fs::File::open(path)
        .map_err(|e| ReadError::Usage(format!("cannot read `{shown}`: {}", io_reason(&e))))?;
    // Read at most one byte past the limit: enough to know the file is too large.
    let limit = smelt::MAX_SOURCE_BYTES as u64;
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| ReadError::Usage(format!("cannot read `{shown}`: {}", io_reason(&e))))?;
    if bytes.len() as u64 > limit {
        let size = meta.len().max(bytes.len() as u64);
        let d = Diagnostic::new(
            Code::TooLarge,
            smelt::Span::at(0),
            format!(
                "file is too large ({:.1} MiB); smelt reads optimizer files of at most 1 MiB",
                size as f64 / (1u64 << 20) as f64
            ),
        )
        .label("file starts here")
        .hint("an optimizer file holds one update rule, a few lines long; check that this is the right file");
        // Show only the first line of such a file.
        let head: Vec<u8> = bytes
            .iter()
            .take(200)
            .take_while(|b| **b != b'\n')
            .copied()
            .collect();
        return Err(ReadError::Invalid(
            Box::new(d),
            String::from_utf8_lossy(&head).into_owned(),
        ));
    }
    match smelt::decode(&bytes) {
        Ok(s) => Ok(s.to_string()),
        Err((d, shown_text)) => Err(ReadError::Invalid(Box::new(d), shown_text)),
    }
}

/// Set once stdout's reader has gone: the rest of the output is dropped.
static STDOUT_CLOSED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Writes a command's output to stdout and flushes it. A reader that has gone (a closed
/// pipe, as in `smelt derive … | head -1`) ends the output quietly: this and later
/// writes are dropped and the command's outcome stands. Any other write error (a full
/// disk) is reported on stderr and fails the command (exit 2).
pub(crate) fn emit(text: &str) -> Result<(), Outcome> {
    if STDOUT_CLOSED.load(std::sync::atomic::Ordering::Relaxed) {
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            STDOUT_CLOSED.store(true, std::sync::atomic::Ordering::Relaxed);
            Ok(())
        }
        Err(e) => {
            eprintln!("error: cannot write the output: {}", io_reason(&e));
            Err(Outcome::Usage)
        }
    }
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => e.to_string(),
    }
}
