//! Running the host tools (`ip`, `mount`, ...) with clear errors.
use crate::{Error, Result};
use tokio::process::Command;

/// Runs `program args`, returns stdout; a non-zero exit is an error carrying stderr.
pub async fn run(program: &str, args: &[&str]) -> Result<String> {
    match run_tolerating(program, args, &[]).await? {
        Some(out) => Ok(out),
        None => Ok(String::new()),
    }
}

/// Like [`run`], but a failure whose stderr contains one of `tolerate` (say "File exists" when
/// the thing is already there) is `Ok(None)`.
pub async fn run_tolerating(
    program: &str,
    args: &[&str],
    tolerate: &[&str],
) -> Result<Option<String>> {
    let out = Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| Error::io(format!("starting {program}"), e))?;
    if out.status.success() {
        return Ok(Some(String::from_utf8_lossy(&out.stdout).into_owned()));
    }
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if tolerate.iter().any(|t| stderr.contains(t)) {
        return Ok(None);
    }
    Err(Error::Command {
        cmd: format!("{program} {}", args.join(" ")),
        status: out.status.to_string(),
        stderr,
    })
}
