//! Running commands: the project root, `$CARGO`, and a small command builder
//! that echoes each command (`$ ...` on stderr) before running it and turns a
//! non-zero exit into an [`Error`].

use core::fmt;
use std::ffi::{OsStr, OsString};
use std::io::{self, BufRead};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Why a task failed; printed by `main` before it exits non-zero.
#[derive(Debug)]
pub(crate) struct Error(String);

impl Error {
    /// A failure described by `msg`.
    pub(crate) fn new(msg: impl Into<String>) -> Self {
        Self(msg.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Result of a task step.
pub(crate) type Result<T = ()> = core::result::Result<T, Error>;

/// The workspace root: the parent of this crate's manifest directory.
pub(crate) fn project_root() -> PathBuf {
    let xtask_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask_dir
        .parent()
        .expect("xtask lives one level below the project root")
        .to_path_buf()
}

/// `cargo +nightly`, through rustup's proxy (`$CARGO` is a toolchain's own
/// cargo, which does not take `+toolchain`), with the toolchain override
/// that `cargo xtask` itself runs under removed.
pub(crate) fn nightly() -> Cmd {
    Cmd::new("cargo")
        .env_remove("RUSTUP_TOOLCHAIN")
        .arg("+nightly")
}

/// Whether a nightly toolchain is installed: `cargo +nightly --version`
/// runs. The tasks that need one skip, saying so, where it does not.
pub(crate) fn has_nightly() -> bool {
    nightly().arg("--version").probe().is_some()
}

/// Where `test` and `lint` build with the nightly toolchain: a target
/// directory of its own, so that the stable builds in `target/` are not
/// rebuilt after each nightly one.
pub(crate) const NIGHTLY_TARGET: &str = "target/nightly";

/// A command to run from the project root.
pub(crate) struct Cmd {
    program: OsString,
    args: Vec<OsString>,
    envs: Vec<(OsString, Option<OsString>)>,
}

impl Cmd {
    /// `program` with no arguments, run from the project root.
    pub(crate) fn new(program: impl AsRef<OsStr>) -> Self {
        Self {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            envs: Vec::new(),
        }
    }

    /// The cargo that invoked us (`$CARGO`), or `cargo` from `PATH`.
    pub(crate) fn cargo() -> Self {
        Self::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
    }

    /// Appends one argument.
    pub(crate) fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Appends several arguments.
    pub(crate) fn args<I>(mut self, args: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable for the child.
    pub(crate) fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        let value = Some(value.as_ref().to_owned());
        self.envs.push((key.as_ref().to_owned(), value));
        self
    }

    /// Removes an environment variable from the child's environment.
    pub(crate) fn env_remove(mut self, key: impl AsRef<OsStr>) -> Self {
        self.envs.push((key.as_ref().to_owned(), None));
        self
    }

    /// Runs with inherited stdio; fails unless the command exits 0.
    pub(crate) fn run(&self) -> Result {
        eprintln!("$ {self}");
        let status = self.command().status().map_err(|e| self.spawn_error(&e))?;
        if status.success() {
            Ok(())
        } else {
            Err(Error::new(format!("`{self}` failed: {status}")))
        }
    }

    /// Runs with stdout echoed line by line as it comes and also returned;
    /// stderr is inherited. Fails unless the command exits 0.
    pub(crate) fn run_tee(&self) -> Result<String> {
        eprintln!("$ {self}");
        let mut child = self
            .command()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| self.spawn_error(&e))?;
        let mut captured = String::new();
        if let Some(stdout) = child.stdout.take() {
            for line in io::BufReader::new(stdout).lines() {
                let line = line.map_err(|e| Error::new(format!("reading `{self}`: {e}")))?;
                println!("{line}");
                captured.push_str(&line);
                captured.push('\n');
            }
        }
        let status = child.wait().map_err(|e| self.spawn_error(&e))?;
        if status.success() {
            Ok(captured)
        } else {
            Err(Error::new(format!("`{self}` failed: {status}")))
        }
    }

    /// Runs with stdout and stderr captured; the caller judges the status.
    pub(crate) fn output(&self) -> Result<Output> {
        eprintln!("$ {self}");
        self.output_quiet()
    }

    /// [`output`](Self::output) without the echo, for commands run many
    /// times over (the caller reports them).
    pub(crate) fn output_quiet(&self) -> Result<Output> {
        self.command()
            .stdin(Stdio::null())
            .output()
            .map_err(|e| self.spawn_error(&e))
    }

    /// Runs quietly (no echo) and returns stdout, or `None` if the program
    /// cannot be started or exits non-zero. For probes such as `rustup`.
    pub(crate) fn probe(&self) -> Option<String> {
        let out = self.command().stdin(Stdio::null()).output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args).current_dir(project_root());
        for (key, value) in &self.envs {
            match value {
                Some(value) => cmd.env(key, value),
                None => cmd.env_remove(key),
            };
        }
        cmd
    }

    fn spawn_error(&self, err: &io::Error) -> Error {
        Error::new(format!(
            "could not run `{}`: {err}",
            self.program.to_string_lossy()
        ))
    }
}

impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.envs.iter().any(|(_, value)| value.is_none()) {
            f.write_str("env ")?;
        }
        for (key, value) in &self.envs {
            match value {
                Some(value) => write!(f, "{}={} ", key.to_string_lossy(), quote(value))?,
                None => write!(f, "-u {} ", key.to_string_lossy())?,
            }
        }
        // `$CARGO` is an absolute path into the toolchain: show it as
        // `cargo`. Paths inside the project are shown relative to its root.
        let program = Path::new(&self.program);
        if std::env::var_os("CARGO").is_some_and(|cargo| cargo == self.program) {
            f.write_str("cargo")?;
        } else {
            let shown = program.strip_prefix(project_root()).unwrap_or(program);
            f.write_str(&quote(shown.as_os_str()))?;
        }
        for arg in &self.args {
            write!(f, " {}", quote(arg))?;
        }
        Ok(())
    }
}

/// Quotes `s` for the echo if a shell would split or expand it.
fn quote(s: &OsStr) -> String {
    let s = s.to_string_lossy();
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c);
    if !s.is_empty() && s.chars().all(plain) {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_quotes_only_when_needed() {
        let cmd =
            Cmd::new("cargo")
                .env("KMEM_TEST_SCALE", "10")
                .args(["test", "--workspace", "a b"]);
        assert_eq!(
            cmd.to_string(),
            "KMEM_TEST_SCALE=10 cargo test --workspace 'a b'"
        );
        let cmd = Cmd::new(project_root().join("target/x")).env_remove("RUSTFLAGS");
        assert_eq!(cmd.to_string(), "env -u RUSTFLAGS target/x");
    }

    #[test]
    fn root_holds_the_workspace_manifest() {
        assert!(project_root().join("Cargo.toml").is_file());
    }
}
