//! The input rules: one function per fact, used by the schema validators (so `validate` and
//! `plan` refuse bad input) and by the AWS layer (so nothing the schema let through reaches an
//! API call). Each returns the problem in words, without naming the attribute: the caller
//! knows where the value came from.

/// Longest cluster name: it is part of IAM, SSM, security group and S3 bucket names.
pub const CLUSTER_NAME_MAX: usize = 40;

/// Replicas a `strata_region` may run.
pub const REGION_REPLICAS_MIN: i64 = 1;
pub const REGION_REPLICAS_MAX: i64 = 15;

/// The AWS regions Strata knows (commercial, GovCloud, China). A region missing here is
/// refused at plan rather than failing half-way through an apply.
pub const KNOWN_REGIONS: &[&str] = &[
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "af-south-1",
    "ap-east-1",
    "ap-east-2",
    "ap-south-1",
    "ap-south-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ap-southeast-7",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ca-central-1",
    "ca-west-1",
    "eu-central-1",
    "eu-central-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "eu-south-1",
    "eu-south-2",
    "eu-north-1",
    "il-central-1",
    "me-south-1",
    "me-central-1",
    "mx-central-1",
    "sa-east-1",
    "us-gov-east-1",
    "us-gov-west-1",
    "cn-north-1",
    "cn-northwest-1",
];

/// Engine versions the node's first boot really installs: Debian 12's MariaDB is 10.11; MySQL
/// comes from MySQL's own repository, series 8.0 and 8.4.
pub fn engine_versions(engine: &str) -> &'static [&'static str] {
    match engine {
        "mariadb" => &["10.11"],
        "mysql" => &["8.0", "8.4"],
        _ => &[],
    }
}

pub fn cluster_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= CLUSTER_NAME_MAX
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid cluster name: use 1 to {CLUSTER_NAME_MAX} lowercase letters, \
             digits and hyphens, starting with a letter and not ending with a hyphen (it becomes \
             part of IAM, SSM, security group and S3 bucket names)"
        ))
    }
}

/// A DNS domain for the endpoints' zone: dot-separated labels of lowercase letters, digits and
/// hyphens (1 to 63 each, not starting or ending with a hyphen), at most 200 characters so the
/// record names built on it stay under DNS's 253.
pub fn dns_domain(d: &str) -> Result<(), String> {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if !d.is_empty() && d.len() <= 200 && d.split('.').all(label_ok) {
        Ok(())
    } else {
        Err(format!(
            "{d:?} is not a usable domain: use dot-separated labels of lowercase letters, digits \
             and hyphens, such as strata.internal or db.example.com (no trailing dot)"
        ))
    }
}

/// A Route 53 hosted zone id as the API returns it without its `/hostedzone/` prefix: letters
/// and digits.
pub fn hosted_zone_id(z: &str) -> Result<(), String> {
    if !z.is_empty() && z.len() <= 32 && z.chars().all(|c| c.is_ascii_alphanumeric()) {
        Ok(())
    } else {
        Err(format!(
            "{z:?} is not a Route 53 hosted zone id: use the id alone, such as Z0123456789ABCDEFGHIJ \
             (without /hostedzone/)"
        ))
    }
}

pub fn region(r: &str) -> Result<(), String> {
    if KNOWN_REGIONS.contains(&r) {
        Ok(())
    } else {
        Err(format!(
            "{r:?} is not an AWS region Strata knows (e.g. us-east-1, eu-west-1; see \
             https://docs.aws.amazon.com/general/latest/gr/rande.html)"
        ))
    }
}

/// An IPv4 CIDR block in canonical form (`10.0.0.0/16`, not `10.0.0.1/16`).
pub fn ipv4_cidr(c: &str) -> Result<(), String> {
    let bad = || format!("{c:?} is not an IPv4 CIDR block such as 10.0.0.0/16");
    let (addr, len) = c.split_once('/').ok_or_else(bad)?;
    let ip: std::net::Ipv4Addr = addr.parse().map_err(|_| bad())?;
    if len.is_empty() || len.len() > 2 || !len.chars().all(|ch| ch.is_ascii_digit()) {
        return Err(bad());
    }
    let len: u32 = len.parse().map_err(|_| bad())?;
    if len > 32 {
        return Err(format!("{c:?}: the prefix length must be 0 to 32"));
    }
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    let bits = u32::from(ip);
    if bits & mask != bits {
        let net = std::net::Ipv4Addr::from(bits & mask);
        return Err(format!("{c:?} has host bits set: the block is {net}/{len}"));
    }
    Ok(())
}

pub fn engine_version(engine: &str, v: &str) -> Result<(), String> {
    let ok = engine_versions(engine);
    if ok.contains(&v) {
        Ok(())
    } else {
        Err(format!(
            "{engine} {v:?} is not a version Strata nodes install: use {}",
            ok.iter()
                .map(|s| format!("{s:?}"))
                .collect::<Vec<_>>()
                .join(" or ")
        ))
    }
}

/// One `engine_settings` entry: a server variable the user may set, with a value that stays
/// on its line of the settings file (the agent's rule, [`strata_topology::roll`]).
pub fn engine_setting(name: &str, value: &str) -> Result<(), String> {
    strata_topology::roll::check_engine_setting(name, value).map_err(|e| e.to_string())
}

/// A tag key the user may set: Strata's and AWS's own prefixes are reserved.
pub fn tag_key(k: &str) -> Result<(), String> {
    let lower = k.to_ascii_lowercase();
    if lower.starts_with(strata_topology::tags::TAG_PREFIX) || lower.starts_with("aws:") {
        return Err(format!(
            "tag key {k:?}: keys starting with \"strata:\" or \"aws:\" are reserved (Strata's \
             own tags and AWS's)"
        ));
    }
    if k.is_empty() || k.chars().count() > 128 {
        return Err(format!("tag key {k:?}: use 1 to 128 characters"));
    }
    Ok(())
}

pub fn tag_value(k: &str, v: &str) -> Result<(), String> {
    if v.chars().count() > 256 {
        return Err(format!("tag {k:?}: a value has at most 256 characters"));
    }
    Ok(())
}

/// An AWS id with a prefix: `subnet-0abc`, `sg-12`, `i-0f`, `ami-9`, `vol-1`.
pub fn aws_id(prefix: &str, what: &str, id: &str) -> Result<(), String> {
    let ok = id
        .strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('-'))
        .is_some_and(|r| {
            !r.is_empty() && r.len() <= 32 && r.chars().all(|c| c.is_ascii_alphanumeric())
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{id:?} is not {what} id (like {prefix}-0123456789abcdef0)"
        ))
    }
}

/// An EC2 instance type: `<family>.<size>` (`r7i.large`, `t3.medium`, `m7g.2xlarge`).
pub fn instance_type(t: &str) -> Result<(), String> {
    let ok = t.split_once('.').is_some_and(|(f, s)| {
        !f.is_empty()
            && f.starts_with(|c: char| c.is_ascii_lowercase())
            && f.chars().any(|c| c.is_ascii_digit())
            && f.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{t:?} is not an EC2 instance type (like r7i.large or t3.medium)"
        ))
    }
}

/// An IAM name (instance profile): 1-128 of letters, digits and `+=,.@_-`.
pub fn iam_name(n: &str) -> Result<(), String> {
    let ok = !n.is_empty()
        && n.len() <= 128
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{n:?} is not an IAM name: 1 to 128 letters, digits and +=,.@_-"
        ))
    }
}

/// A KMS key id, alias or ARN.
pub fn kms_key(k: &str) -> Result<(), String> {
    let uuid = |s: &str| {
        s.len() == 36
            && s.chars().enumerate().all(|(i, c)| {
                if [8, 13, 18, 23].contains(&i) {
                    c == '-'
                } else {
                    c.is_ascii_hexdigit()
                }
            })
    };
    let mrk = |s: &str| {
        s.starts_with("mrk-") && s.len() > 4 && s[4..].chars().all(|c| c.is_ascii_hexdigit())
    };
    let ok = uuid(k)
        || mrk(k)
        || (k.starts_with("alias/") && k.len() > 6)
        || (k.starts_with("arn:") && k.contains(":kms:"));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{k:?} is not a KMS key id, alias/<name> or key ARN"
        ))
    }
}

/// A data device name Strata may attach at: `/dev/sdf` to `/dev/sdp`.
pub fn device_name(d: &str) -> Result<(), String> {
    let ok = d
        .strip_prefix("/dev/sd")
        .is_some_and(|r| r.len() == 1 && ('f'..='p').contains(&r.chars().next().unwrap_or('a')));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{d:?}: use a device name from /dev/sdf to /dev/sdp"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        assert!(cluster_name("orders-2").is_ok());
        for bad in ["", "Orders", "2orders", "orders_x", "orders-", "-o"] {
            assert!(cluster_name(bad).is_err(), "{bad:?}");
        }
        assert!(cluster_name(&"a".repeat(41)).is_err());
        assert!(region("eu-west-1").is_ok());
        assert!(region("eu-west-9").is_err() && region("moon-1").is_err());
        assert!(ipv4_cidr("10.0.0.0/16").is_ok() && ipv4_cidr("0.0.0.0/0").is_ok());
        for bad in [
            "10.0.0.1/16",
            "10.0.0.0/33",
            "10.0.0/16",
            "10.0.0.0",
            "x/1",
            "10.0.0.0/-1",
        ] {
            assert!(ipv4_cidr(bad).is_err(), "{bad:?}");
        }
        assert!(
            ipv4_cidr("10.0.0.1/16")
                .unwrap_err()
                .contains("10.0.0.0/16")
        );
        assert!(engine_version("mariadb", "10.11").is_ok());
        assert!(engine_version("mariadb", "11.4").is_err());
        assert!(engine_version("mysql", "8.4").is_ok() && engine_version("mysql", "5.7").is_err());
        assert!(tag_key("team").is_ok());
        assert!(tag_key("strata:x").is_err() && tag_key("AWS:x").is_err() && tag_key("").is_err());
        assert!(aws_id("subnet", "a subnet", "subnet-0abc").is_ok());
        assert!(aws_id("subnet", "a subnet", "sg-0abc").is_err());
        assert!(aws_id("subnet", "a subnet", "subnet-").is_err());
        assert!(instance_type("r7i.large").is_ok() && instance_type("u-6tb1.metal").is_ok());
        assert!(instance_type("large").is_err() && instance_type("R7.large").is_err());
        assert!(
            kms_key("alias/x").is_ok() && kms_key("1234abcd-12ab-34cd-56ef-1234567890ab").is_ok()
        );
        assert!(kms_key("nope").is_err());
        assert!(device_name("/dev/sdf").is_ok() && device_name("/dev/sdz").is_err());
        assert!(iam_name("strata-x").is_ok() && iam_name("a b").is_err());
    }
}
