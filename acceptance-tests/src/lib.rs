//! Shared harness for the acceptance tests: finds the CLI (`tofu`, or HashiCorp's `terraform`
//! when `STRATA_TF_CLI=terraform`) and LocalStack, packages the provider into a filesystem
//! mirror, writes a CLI config that installs Strata only from that mirror, runs the CLI with
//! the environment a LocalStack run needs, and creates the LocalStack
//! network (VPCs and subnets) that modules and examples need, since Strata has no VPC resource.
//!
//! It owns no provider logic: everything here drives real processes from the outside.

pub mod network;
pub mod nodes;

use anyhow::{Context, Result, anyhow, bail};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// The provider's source address as `tofu` resolves `strata/strata`.
pub const PROVIDER_ADDRESS: &str = "registry.opentofu.org/strata/strata";
/// The same as `terraform` resolves it.
pub const TERRAFORM_PROVIDER_ADDRESS: &str = "registry.terraform.io/strata/strata";

/// Which CLI the tests drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cli {
    Tofu,
    Terraform,
}

impl Cli {
    /// `STRATA_TF_CLI`: `tofu` (the default) or `terraform`. Anything else panics, so a typo
    /// never silently runs the other CLI.
    pub fn selected() -> Cli {
        match std::env::var("STRATA_TF_CLI").ok().as_deref() {
            None | Some("") | Some("tofu") => Cli::Tofu,
            Some("terraform") => Cli::Terraform,
            Some(other) => panic!("STRATA_TF_CLI must be tofu or terraform, not {other:?}"),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Cli::Tofu => "tofu",
            Cli::Terraform => "terraform",
        }
    }

    /// What `strata/strata` means to this CLI (its default registry host).
    pub fn provider_address(self) -> &'static str {
        match self {
            Cli::Tofu => PROVIDER_ADDRESS,
            Cli::Terraform => TERRAFORM_PROVIDER_ADDRESS,
        }
    }
}

/// `text` with every run of whitespace made one space. tofu wraps diagnostics
/// at the terminal width and test resource names are random, so a phrase in a
/// diagnostic can fall across a line break: compare phrases against this.
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The repository root (the workspace folder holding `scripts/`, `modules/`, `examples/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// LocalStack's edge endpoint: `$LOCALSTACK_ENDPOINT`, else the default port on loopback.
pub fn localstack_endpoint() -> String {
    std::env::var("LOCALSTACK_ENDPOINT")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "http://127.0.0.1:4566".to_string())
}

/// The selected CLI's binary ([`Cli::selected`]). For tofu: `$TOFU` if set, else whatever
/// `scripts/install-tofu` prints; for terraform: `$TERRAFORM`, else `scripts/install-terraform`
/// (both build the CLI on first use and cache it).
pub fn tofu_path() -> Result<PathBuf> {
    static TOFU: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    TOFU.get_or_init(|| find_cli(Cli::selected()).map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!(e))
}

fn find_cli(cli: Cli) -> Result<PathBuf> {
    let var = match cli {
        Cli::Tofu => "TOFU",
        Cli::Terraform => "TERRAFORM",
    };
    if let Some(t) = std::env::var_os(var).filter(|t| !t.is_empty()) {
        let p = PathBuf::from(t);
        if !p.is_file() {
            bail!(
                "{var}={} is not a file; unset it or point it at a {} binary",
                p.display(),
                cli.name()
            );
        }
        return Ok(p);
    }
    let script = repo_root().join(format!("scripts/install-{}", cli.name()));
    let out = Command::new(&script)
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!(
            "{} is missing and {} failed (set {var}=/path/to/{} or run scripts/test):\n{}",
            cli.name(),
            script.display(),
            cli.name(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Ok(PathBuf::from(path))
}

/// Fails with a message saying what to do when LocalStack does not answer its health check.
pub fn require_localstack() -> Result<()> {
    let endpoint = localstack_endpoint();
    let body = http_get(&endpoint, "/_localstack/health").with_context(|| {
        format!("LocalStack does not answer at {endpoint}: run `scripts/localstack start` (or scripts/test)")
    })?;
    if !body.contains("\"ec2\"") {
        bail!(
            "LocalStack at {endpoint} answers but serves no EC2: start it with scripts/localstack start"
        );
    }
    Ok(())
}

/// A minimal HTTP/1.0 GET against LocalStack; enough for its health endpoint without pulling an
/// HTTP client into the tests.
fn http_get(endpoint: &str, path: &str) -> Result<String> {
    http_request("GET", endpoint, path)
}

/// One HTTP/1.0 request with no body; the whole response (status line, headers, body).
fn http_request(method: &str, endpoint: &str, path: &str) -> Result<String> {
    let hostport = endpoint
        .strip_prefix("http://")
        .ok_or_else(|| anyhow!("LOCALSTACK_ENDPOINT must be http://host:port, got {endpoint}"))?
        .trim_end_matches('/');
    let addr = std::net::ToSocketAddrs::to_socket_addrs(hostport)?
        .next()
        .ok_or_else(|| anyhow!("cannot resolve {hostport}"))?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {hostport}\r\nContent-Length: 0\r\n\r\n"
    )?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    if !resp.starts_with("HTTP/1.1 200") && !resp.starts_with("HTTP/1.0 200") {
        bail!("{}", resp.lines().next().unwrap_or("empty response"));
    }
    Ok(resp)
}

/// Packages the provider once per test process (debug profile) with `scripts/package` and
/// returns the filesystem-mirror folder (`<dist>/mirror`).
pub fn provider_mirror() -> Result<PathBuf> {
    static MIRROR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    MIRROR
        .get_or_init(|| package_provider().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!(e))
}

/// Where tests package to: beside the repo's own `dist/`, so a release `scripts/package` and
/// tests never overwrite each other.
pub fn test_dist_dir() -> PathBuf {
    repo_root().join("dist/test-debug")
}

fn package_provider() -> Result<PathBuf> {
    let dist = test_dist_dir();
    let script = repo_root().join("scripts/package");
    let out = Command::new(&script)
        .env("STRATA_PROFILE", "debug")
        .env("STRATA_DIST", &dist)
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!(
            "scripts/package failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mirror = dist.join("mirror");
    if !mirror.join(PROVIDER_ADDRESS).is_dir() {
        bail!(
            "scripts/package succeeded but {} has no {PROVIDER_ADDRESS}",
            mirror.display()
        );
    }
    Ok(mirror)
}

/// The workspace version (`[workspace.package] version`), which is the provider's version.
pub fn workspace_version() -> Result<String> {
    let text = std::fs::read_to_string(repo_root().join("Cargo.toml"))?;
    let mut in_section = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_section = line == "[workspace.package]";
        } else if in_section && let Some(rest) = line.strip_prefix("version") {
            let v = rest
                .trim_start()
                .trim_start_matches('=')
                .trim()
                .trim_matches('"');
            return Ok(v.to_string());
        }
    }
    bail!("no [workspace.package] version in Cargo.toml")
}

/// Writes a CLI config that installs Strata only from `mirror` and everything else (nothing, in
/// our configs) directly; returns its path. It names both registry hosts, so the one file
/// serves tofu and terraform.
pub fn write_cli_config(dir: &Path, mirror: &Path) -> Result<PathBuf> {
    let path = dir.join("strata.tfrc");
    let both = format!("\"{PROVIDER_ADDRESS}\", \"{TERRAFORM_PROVIDER_ADDRESS}\"");
    let text = format!(
        "provider_installation {{\n  filesystem_mirror {{\n    path    = {mirror:?}\n    include = [{both}]\n  }}\n  direct {{\n    exclude = [{both}]\n  }}\n}}\n",
        mirror = mirror.display().to_string()
    );
    std::fs::write(&path, text)?;
    Ok(path)
}

/// Runs the selected CLI (`tofu` or `terraform`, see [`Cli`]) with Strata from a mirror and
/// AWS pointed at LocalStack.
#[derive(Debug, Clone)]
pub struct Tofu {
    pub cli: Cli,
    pub bin: PathBuf,
    /// The filesystem mirror the CLI config installs Strata from.
    pub mirror: PathBuf,
    pub cli_config: PathBuf,
    pub endpoint: String,
}

impl Tofu {
    /// Finds tofu, packages the provider, and writes the CLI config into `scratch`.
    pub fn setup(scratch: &Path) -> Result<Self> {
        let bin = tofu_path()?;
        let mirror = provider_mirror()?;
        let cli_config = write_cli_config(scratch, &mirror)?;
        Ok(Self {
            cli: Cli::selected(),
            bin,
            mirror,
            cli_config,
            endpoint: localstack_endpoint(),
        })
    }

    /// The command with the environment every run gets: our CLI config, no prompts, LocalStack
    /// test credentials, and the endpoint for SDKs that read `AWS_ENDPOINT_URL`.
    pub fn command(&self, dir: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.current_dir(dir)
            .args(args)
            .env("TF_CLI_CONFIG_FILE", &self.cli_config)
            .env("TF_IN_AUTOMATION", "1")
            .env("TF_INPUT", "0")
            .env("CHECKPOINT_DISABLE", "1")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ENDPOINT_URL", &self.endpoint)
            .env_remove("TF_PLUGIN_CACHE_DIR")
            .env_remove("AWS_PROFILE");
        c
    }

    pub fn run(&self, dir: &Path, args: &[&str]) -> Result<Output> {
        self.command(dir, args)
            .output()
            .with_context(|| format!("starting {} {}", self.bin.display(), args.join(" ")))
    }

    /// Runs and returns stdout; on failure the error carries both streams.
    pub fn run_ok(&self, dir: &Path, args: &[&str]) -> Result<String> {
        let out = self.run(dir, args)?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            bail!(
                "`{} {}` in {} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
                self.cli.name(),
                args.join(" "),
                dir.display(),
                out.status,
                stdout,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(stdout)
    }
}

/// This machine's provider platform (`linux_amd64`), as lock files and mirrors name it.
pub fn host_platform() -> String {
    let os = std::env::consts::OS;
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    format!("{os}_{arch}")
}

impl Tofu {
    /// `init` the way the README tells users to install from a mirror, so that init prints no
    /// "Incomplete lock file information" warning: `get` (modules: `providers lock` reads the
    /// whole configuration), `providers lock -fs-mirror=<mirror> -platform=<each platform the
    /// mirror holds>` (here: this machine's), then `init`. Returns init's output (both streams
    /// joined: warnings go to either, depending on the CLI).
    pub fn lock_and_init(&self, dir: &Path, init_args: &[&str]) -> Result<String> {
        self.run_ok(dir, &["get", "-no-color"])?;
        self.run_ok(
            dir,
            &[
                "providers",
                "lock",
                "-no-color",
                &format!("-fs-mirror={}", self.mirror.display()),
                &format!("-platform={}", host_platform()),
            ],
        )?;
        let mut args = vec!["init", "-input=false", "-no-color"];
        args.extend_from_slice(init_args);
        let out = self.run(dir, &args)?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if !out.status.success() {
            bail!(
                "`{} init` in {} failed:\n{text}",
                self.cli.name(),
                dir.display()
            );
        }
        Ok(text)
    }
}

/// Copies a folder tree (configs only: skips `.terraform` and state) so tests never write into
/// the repository.
pub fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let name = entry.file_name();
        let name_s = name.to_string_lossy();
        if name_s == ".terraform" || name_s == ".terraform.lock.hcl" || name_s.ends_with(".tfstate")
        {
            continue;
        }
        let src = entry.path();
        let dst = to.join(&name);
        if entry.file_type()?.is_dir() {
            copy_tree(&src, &dst)?;
        } else {
            std::fs::copy(&src, &dst)?;
        }
    }
    Ok(())
}

/// Serialises tests of one process that create LocalStack objects by tag (find-or-create is not
/// atomic across concurrent callers).
pub fn localstack_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_config_names_the_mirror_and_excludes_direct() {
        let d = tempfile::tempdir().unwrap();
        let p = write_cli_config(d.path(), Path::new("/x/mirror")).unwrap();
        let t = std::fs::read_to_string(p).unwrap();
        assert!(t.contains("path    = \"/x/mirror\""), "{t}");
        assert!(
            t.contains(
                "exclude = [\"registry.opentofu.org/strata/strata\", \"registry.terraform.io/strata/strata\"]"
            ),
            "{t}"
        );
    }

    #[test]
    fn workspace_version_reads_the_root_manifest() {
        let v = workspace_version().unwrap();
        assert!(
            v.split('.').count() == 3 && v.split('.').all(|p| p.parse::<u64>().is_ok()),
            "{v}"
        );
    }

    #[test]
    fn copy_tree_skips_tofu_working_files() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(a.path().join("sub/.terraform")).unwrap();
        std::fs::write(a.path().join("sub/main.tf"), "x").unwrap();
        std::fs::write(a.path().join("terraform.tfstate"), "s").unwrap();
        copy_tree(a.path(), b.path()).unwrap();
        assert!(b.path().join("sub/main.tf").is_file());
        assert!(!b.path().join("sub/.terraform").exists());
        assert!(!b.path().join("terraform.tfstate").exists());
    }
}

/// `strata-fault-proxy` in front of LocalStack, stopped (by its PID) when dropped. At rate 0 it
/// only counts: [`AwsProxy::calls`] is what the provider asked AWS since the last
/// [`AwsProxy::reset`].
pub struct AwsProxy {
    child: std::process::Child,
    /// `http://127.0.0.1:<port>`: the endpoint to give the provider.
    pub url: String,
}

/// The AWS calls the proxy saw: the total and the count per `service:Operation`.
#[derive(Debug, Clone, Default)]
pub struct AwsCalls {
    pub total: u64,
    pub by_operation: std::collections::BTreeMap<String, u64>,
}

impl AwsCalls {
    /// The calls per service (`ec2`, `route53`, ...: an operation's name up to its colon), as
    /// `"40 ec2, 8 route53, ..."`, most first.
    pub fn by_service(&self) -> String {
        let mut per: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
        for (op, n) in &self.by_operation {
            *per.entry(op.split(':').next().unwrap_or(op)).or_default() += n;
        }
        let mut v: Vec<_> = per.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        v.iter()
            .map(|(s, n)| format!("{n} {s}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl std::fmt::Display for AwsCalls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut ops: Vec<_> = self.by_operation.iter().collect();
        ops.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        write!(f, "{} calls (", self.total)?;
        for (i, (op, n)) in ops.iter().enumerate() {
            write!(f, "{}{n} {op}", if i > 0 { ", " } else { "" })?;
        }
        write!(f, ")")
    }
}

impl AwsProxy {
    /// Starts `bin` (the test's `env!("CARGO_BIN_EXE_strata-fault-proxy")`) on a free loopback
    /// port; `rate` 0 injects nothing. `stats_file`: also written every half second.
    pub fn start(
        bin: &Path,
        upstream: &str,
        seed: u64,
        rate: f64,
        stats_file: Option<&Path>,
    ) -> Result<AwsProxy> {
        use std::io::BufRead;
        let mut cmd = Command::new(bin);
        cmd.args(["--listen", "127.0.0.1:0", "--upstream", upstream])
            .args(["--seed", &seed.to_string(), "--rate", &rate.to_string()])
            .args(["--slow-ms", "1500"])
            .stdout(std::process::Stdio::piped());
        if let Some(f) = stats_file {
            cmd.arg("--stats").arg(f);
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("start {}", bin.display()))?;
        let mut line = String::new();
        let out = child.stdout.take().context("proxy stdout")?;
        std::io::BufReader::new(out).read_line(&mut line)?;
        let addr = line.trim().to_string();
        if !addr.starts_with("127.0.0.1:") {
            let _ = child.kill();
            let _ = child.wait();
            bail!("strata-fault-proxy said {addr:?} instead of its address");
        }
        Ok(AwsProxy {
            child,
            url: format!("http://{addr}"),
        })
    }

    /// The proxy's counters now (`requests`, `forwarded`, the faults, `calls` per operation).
    pub fn stats(&self) -> Result<serde_json::Value> {
        let resp = http_request("GET", &self.url, "/_strata-proxy/stats")?;
        let body = resp.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        serde_json::from_str(body).with_context(|| format!("proxy stats: {body:?}"))
    }

    /// Zeroes every counter.
    pub fn reset(&self) -> Result<()> {
        http_request("POST", &self.url, "/_strata-proxy/reset").map(|_| ())
    }

    /// The AWS calls since the last reset.
    pub fn calls(&self) -> Result<AwsCalls> {
        let s = self.stats()?;
        let by_operation: std::collections::BTreeMap<String, u64> = s["calls"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                    .collect()
            })
            .unwrap_or_default();
        Ok(AwsCalls {
            total: by_operation.values().sum(),
            by_operation,
        })
    }
}

impl Drop for AwsProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
