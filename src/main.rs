//! The `smelt` command line: a thin layer over the library. Only this binary prints.
// Not `print_stdout`: the output goes through `cli::emit`, which handles a closed pipe
// and a full disk (`println!` panics on both).
#![allow(
    clippy::print_stderr,
    reason = "the command line is the one place that writes to the terminal"
)]

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
