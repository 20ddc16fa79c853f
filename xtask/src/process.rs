//! Running commands loudly: every command is printed before it runs.

use std::process::Command;

use anyhow::{Context, Result, bail};

/// `cargo` as invoked by the user (the same toolchain that runs this xtask).
pub fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

pub fn run(command: &mut Command) -> Result<()> {
    println!("xtask: $ {}", describe(command));
    succeed(command)
}

/// [`run`], with the command line and everything it prints written to `log` instead of the
/// terminal: for commands that run beside others, whose output would interleave.
pub fn run_logged(command: &mut Command, log: &std::fs::File) -> Result<()> {
    use std::io::Write;
    writeln!(&*log, "xtask: $ {}", describe(command))?;
    succeed(command.stdout(log.try_clone()?).stderr(log.try_clone()?))
}

/// Runs `command` to its end; an error if it cannot start or fails.
fn succeed(command: &mut Command) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("cannot start `{}`", describe(command)))?;
    if !status.success() {
        bail!("`{}` failed with {status}", describe(command));
    }
    Ok(())
}

/// Runs quietly and returns stdout, or `None` when the program is missing or fails.
pub fn output(command: &mut Command) -> Option<String> {
    let output = command.output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

pub fn describe(command: &Command) -> String {
    let mut text = command.get_program().to_string_lossy().into_owned();
    for argument in command.get_args() {
        text.push(' ');
        text.push_str(&argument.to_string_lossy());
    }
    text
}
