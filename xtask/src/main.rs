//! `cargo xtask`: kmem's single entry point for testing, linting, the no_std
//! proof, the loom models, stress, sanitizer and fuzzing runs, the demo and
//! benchmarks. CI calls only this (see `.ci/run`).
//!
//! Every subcommand lives in its own module and runs `$CARGO` (falling back to
//! `cargo`) from the project root, printing each command before it runs it and
//! stopping at the first step that fails. Its dependencies are few and
//! small (lexopt for the command line, serde and serde_json for `bench
//! --programs`' JSON records), so the task runner builds in seconds.
//!
//! Run `cargo xtask help` for the list of commands.
#![forbid(unsafe_code)]

mod bench;
mod demo;
mod flags;
mod fuzz;
mod help;
mod lint;
mod loom;
mod nostd;
mod sanitize;
mod shell;
mod stress;
mod test;

use std::process::ExitCode;

use flags::Task;

fn main() -> ExitCode {
    let task = match flags::parse(std::env::args_os().skip(1)) {
        Ok(task) => task,
        Err(err) => {
            eprintln!("xtask: {err}");
            eprintln!();
            eprint!("{}", help::USAGE);
            return ExitCode::from(2);
        }
    };
    let result = match task {
        Task::Help => {
            print!("{}", help::USAGE);
            Ok(())
        }
        Task::Test(opts) => test::run(&opts),
        Task::Lint => lint::run(),
        Task::Loom(opts) => loom::run(&opts),
        Task::Nostd => nostd::run(),
        Task::Demo => demo::run(),
        Task::Stress(opts) => stress::run(&opts),
        Task::Sanitize => sanitize::run(),
        Task::Fuzz(opts) => fuzz::run(opts.seconds, &opts.targets),
        Task::Bench(opts) => bench::run(&opts),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: error: {err}");
            ExitCode::FAILURE
        }
    }
}
