//! The files the agent owns on a node: the engine config file (static settings) and the
//! server's TLS certificate, generated self-signed when none is provided.

use crate::engine;
use crate::error::AgentError;
use std::path::Path;
use strata_topology::NodeConfig;

/// The engine config file for this node: what the server must be started with. It ends by
/// including the engine settings file ([`settings_file_path`]), which rolls change apart
/// from this file.
pub fn render_server_config(cfg: &NodeConfig) -> String {
    let mut s = engine::for_engine(cfg.engine).render_server_config(cfg);
    s.push_str(&format!(
        "# The user's engine_settings (changed by rolling changes, see docs/rolling-changes.md).\n!include {}\n",
        settings_file_path(cfg).display()
    ));
    s
}

/// The user's engine settings, next to the server config. Not `*.cnf`, so a `!includedir` of
/// that folder (Debian's my.cnf) skips it: only the server config's `!include` reads it, once.
pub fn settings_file_path(cfg: &NodeConfig) -> std::path::PathBuf {
    let main = Path::new(cfg.server_config_path());
    main.with_file_name("strata-engine-settings.inc")
}

/// Writes `content` to `path` unless it already holds exactly that. Returns whether it wrote.
pub fn write_if_changed(path: &Path, content: &[u8], mode: u32) -> Result<bool, AgentError> {
    use std::os::unix::fs::PermissionsExt;
    let shown = path.display().to_string();
    if let Ok(existing) = std::fs::read(path)
        && existing == content
    {
        return Ok(false);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| AgentError::io(dir.display().to_string(), e))?;
    }
    // Write beside and rename, so a crash never leaves a half-written config the server reads.
    let tmp = path.with_extension("strata-tmp");
    std::fs::write(&tmp, content).map_err(|e| AgentError::io(&shown, e))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
        .map_err(|e| AgentError::io(&shown, e))?;
    std::fs::rename(&tmp, path).map_err(|e| AgentError::io(&shown, e))?;
    Ok(true)
}

/// Makes sure the server certificate and key exist. Returns whether it generated them.
pub fn ensure_tls_material(cfg: &NodeConfig) -> Result<bool, AgentError> {
    let cert = Path::new(&cfg.tls.cert_file);
    let key = Path::new(&cfg.tls.key_file);
    if cert.exists() && key.exists() {
        return Ok(false);
    }
    let names = vec![
        cfg.node_name.clone(),
        "localhost".to_string(),
        "127.0.0.1".to_string(),
    ];
    let generated =
        rcgen::generate_simple_self_signed(names).map_err(|e| AgentError::Tls(e.to_string()))?;
    write_if_changed(key, generated.signing_key.serialize_pem().as_bytes(), 0o600)?;
    give_to_mysql_user(key);
    write_if_changed(cert, generated.cert.pem().as_bytes(), 0o644)?;
    Ok(true)
}

/// The server reads its key as the `mysql` user on an instance; tests run it as root, where
/// there may be no such user, so this is best effort.
fn give_to_mysql_user(path: &Path) {
    let Ok(passwd) = std::fs::read_to_string("/etc/passwd") else {
        return;
    };
    let ids = passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.first() == Some(&"mysql") && f.len() > 3)
            .then(|| Some((f[2].parse::<u32>().ok()?, f[3].parse::<u32>().ok()?)))
            .flatten()
    });
    if let Some((uid, gid)) = ids {
        let _ = std::os::unix::fs::chown(path, Some(uid), Some(gid));
    }
}

/// What `prepare_server_files` did, for the bootstrap report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prepared {
    pub tls_generated: bool,
    pub config_written: bool,
}

/// Everything that must exist before the server starts: TLS material and the config file.
pub fn prepare_server_files(cfg: &NodeConfig) -> Result<Prepared, AgentError> {
    let tls_generated = ensure_tls_material(cfg)?;
    // The launch settings (generation 0), only when there is no file yet: a roll's newer
    // settings, written by the agent later, must survive every later bootstrap.
    let settings = settings_file_path(cfg);
    if !settings.exists() {
        write_if_changed(
            &settings,
            strata_topology::roll::render_settings_file(cfg.engine, 0, &cfg.engine_settings)
                .as_bytes(),
            0o644,
        )?;
    }
    let config_written = write_if_changed(
        Path::new(cfg.server_config_path()),
        render_server_config(cfg).as_bytes(),
        0o644,
    )?;
    Ok(Prepared {
        tls_generated,
        config_written,
    })
}
