//! Applying a desired-config generation on this node: write the settings file, restart the
//! server, wait for it. Only a replica does this (the caller checks): a source never restarts
//! itself while it holds the lease; a roll first switches the source over.

use crate::bootstrap::Options as BootstrapOptions;
use crate::engine::{self, same_value};
use crate::files::{settings_file_path, write_if_changed};
use crate::sql;
use std::time::{Duration, Instant};
use strata_topology::NodeConfig;
use strata_topology::roll::{DesiredConfig, render_settings_file};

/// How long a restarted server may take to answer before the previous settings are restored.
pub const START_TIMEOUT: Duration = Duration::from_secs(90);

/// Writes `d`'s settings, restarts the server and waits until it answers. When it does not
/// start with them (an unknown variable, a bad value), the previous file is put back and the
/// server restarted again, and the error says why; the node then serves with its old settings.
pub async fn apply(
    cfg: &NodeConfig,
    opts: &BootstrapOptions,
    d: &DesiredConfig,
) -> Result<(), String> {
    let Some(cmd) = opts.restart_command.clone() else {
        return Err("no --restart-command: the agent cannot restart the server".into());
    };
    if let Some(v) = &d.engine_version {
        ensure_version(cfg, v).await?;
    }
    let path = settings_file_path(cfg);
    let previous = std::fs::read(&path).ok();
    let text = render_settings_file(cfg.engine, d.generation, &d.engine_settings);
    write_if_changed(&path, text.as_bytes(), 0o644).map_err(|e| e.to_string())?;
    tracing::info!(
        generation = d.generation,
        "engine settings written: restarting the server"
    );
    let started = Instant::now();
    let outcome = match restart(&cmd).await {
        Ok(()) => wait_up(opts, START_TIMEOUT).await,
        Err(e) => Err(e),
    };
    match outcome {
        Ok(()) => {
            tracing::info!(
                generation = d.generation,
                ms = started.elapsed().as_millis() as u64,
                "server restarted with the new engine settings"
            );
            check_values(cfg, opts, d).await;
            Ok(())
        }
        Err(why) => {
            tracing::error!(generation = d.generation, %why, "server did not come back with the new settings: restoring the previous ones");
            match previous {
                Some(p) => {
                    let _ = write_if_changed(&path, &p, 0o644);
                }
                None => {
                    let _ = std::fs::remove_file(&path);
                }
            }
            if restart(&cmd).await.is_ok() {
                let _ = wait_up(opts, START_TIMEOUT).await;
            }
            Err(format!(
                "generation {}: the server did not start with these settings ({why}); previous settings restored",
                d.generation
            ))
        }
    }
}

/// Before a version roll's restart: installs `version` of the server package when the node
/// runs another one and its package source has it. Installed already (a same-version restart,
/// all the nodes here can do: only MariaDB 10.11 is in their source) is nothing to do; a
/// version the source lacks fails this generation, which stops the roll at this node before
/// the source is touched.
async fn ensure_version(cfg: &NodeConfig, version: &str) -> Result<(), String> {
    use strata_topology::roll::{package_version_matches, server_package};
    let pkg = server_package(cfg.engine);
    let (_, installed) = run_out("dpkg-query", &["-W", "-f", "${Version}", pkg]).await?;
    if package_version_matches(installed.trim(), version) {
        tracing::info!(%version, installed = %installed.trim(), "engine version already installed: restart only");
        return Ok(());
    }
    let (_, madison) = run_out("apt-cache", &["madison", pkg]).await?;
    let Some(candidate) = madison
        .lines()
        .filter_map(|l| l.split('|').nth(1).map(str::trim))
        .find(|v| package_version_matches(v, version))
        .map(str::to_string)
    else {
        return Err(format!(
            "engine version {version} is not in this node's package source ({pkg} {} installed); nothing was changed",
            installed.trim()
        ));
    };
    tracing::info!(%version, %candidate, "installing the engine version before the restart");
    let spec = format!("{pkg}={candidate}");
    let (ok, _) = run_out(
        "apt-get",
        &[
            "install",
            "-y",
            "--no-install-recommends",
            "-o",
            "Dpkg::Options::=--force-confold",
            &spec,
        ],
    )
    .await?;
    if ok {
        Ok(())
    } else {
        Err(format!("apt-get install {spec} failed"))
    }
}

/// Runs a program; its success and standard output.
async fn run_out(prog: &str, args: &[&str]) -> Result<(bool, String), String> {
    tokio::process::Command::new(prog)
        .args(args)
        .output()
        .await
        .map_err(|e| format!("{prog}: {e}"))
        .map(|o| {
            (
                o.status.success(),
                String::from_utf8_lossy(&o.stdout).into_owned(),
            )
        })
}

async fn restart(cmd: &[String]) -> Result<(), String> {
    let Some((prog, args)) = cmd.split_first() else {
        return Err("empty restart command".into());
    };
    let status = tokio::process::Command::new(prog)
        .args(args)
        .status()
        .await
        .map_err(|e| format!("{prog}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{} exited with {status}", cmd.join(" ")))
    }
}

async fn wait_up(opts: &BootstrapOptions, within: Duration) -> Result<(), String> {
    let deadline = Instant::now() + within;
    loop {
        match sql::connect_local(&opts.local, Duration::from_secs(2)).await {
            Ok(c) => {
                let _ = c.disconnect().await;
                return Ok(());
            }
            Err(e) if Instant::now() >= deadline => {
                return Err(format!("not answering after {} s: {e}", within.as_secs()));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Logs settings the running server reports differently. Only a warning: the server
/// normalizes many values (sizes, enum spellings), so a difference is not proof of a problem.
async fn check_values(cfg: &NodeConfig, opts: &BootstrapOptions, d: &DesiredConfig) {
    let eng = engine::for_engine(cfg.engine);
    let Ok(mut c) = sql::connect_local(&opts.local, Duration::from_secs(2)).await else {
        return;
    };
    for (k, want) in &d.engine_settings {
        if let Ok(Some(have)) = sql::scalar(&mut c, &eng.read_global_sql(k), k).await
            && !same_value(&have, want)
            && normalize_size(want).is_none_or(|n| n.to_string() != have)
        {
            tracing::warn!(setting = %k, %have, %want, "the server reports another value than the settings file");
        }
    }
    let _ = c.disconnect().await;
}

/// `128M` → 134217728 (the server reports sizes in bytes).
fn normalize_size(v: &str) -> Option<u64> {
    let (num, mult) = match v.chars().last()? {
        'K' | 'k' => (&v[..v.len() - 1], 1u64 << 10),
        'M' | 'm' => (&v[..v.len() - 1], 1 << 20),
        'G' | 'g' => (&v[..v.len() - 1], 1 << 30),
        _ => return None,
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_normalize() {
        assert_eq!(normalize_size("128M"), Some(134_217_728));
        assert_eq!(normalize_size("2k"), Some(2048));
        assert_eq!(normalize_size("300"), None);
        assert_eq!(normalize_size("xM"), None);
    }
}
