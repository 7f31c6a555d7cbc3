//! GTID position arithmetic for the "GTID gap" in status: how many transactions a replica
//! lacks compared with its source. MariaDB positions are one `domain-server-seq` per domain;
//! MySQL GTID sets are `uuid:interval[:interval]` lists.

use std::collections::BTreeMap;

/// MariaDB: `0-1-100,1-3-7` → {domain: seq}. `None` on text that is not a position.
pub fn parse_mariadb_pos(pos: &str) -> Option<BTreeMap<u32, u64>> {
    let mut out = BTreeMap::new();
    for part in pos.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let mut it = part.split('-');
        let domain: u32 = it.next()?.parse().ok()?;
        let _server: u32 = it.next()?.parse().ok()?;
        let seq: u64 = it.next()?.parse().ok()?;
        if it.next().is_some() {
            return None;
        }
        let e = out.entry(domain).or_insert(0);
        *e = (*e).max(seq);
    }
    Some(out)
}

/// Transactions in `source` beyond `replica`, summed over domains.
pub fn mariadb_gap(source: &str, replica: &str) -> Option<u64> {
    let s = parse_mariadb_pos(source)?;
    let r = parse_mariadb_pos(replica)?;
    Some(
        s.iter()
            .map(|(d, seq)| seq.saturating_sub(r.get(d).copied().unwrap_or(0)))
            .sum(),
    )
}

/// MySQL: `uuid:1-5:7,uuid2:1-3` → {uuid: [(start, end)]}, intervals inclusive.
pub fn parse_mysql_set(set: &str) -> Option<BTreeMap<String, Vec<(u64, u64)>>> {
    let mut out: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
    for part in set.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let mut it = part.split(':');
        let uuid = it.next()?.trim().to_ascii_lowercase();
        let mut rest: Vec<&str> = it.collect();
        // MySQL 8.4 tagged GTIDs: `uuid:tag:1-5`; a tag is not numeric. Fold it into the key.
        let mut key = uuid;
        while let Some(first) = rest.first() {
            if first.chars().next().is_some_and(|c| c.is_ascii_digit()) {
                break;
            }
            key = format!("{key}:{first}");
            rest.remove(0);
        }
        let ivs = out.entry(key).or_default();
        for iv in rest {
            let (a, b) = match iv.split_once('-') {
                Some((a, b)) => (a.parse().ok()?, b.parse().ok()?),
                None => {
                    let n: u64 = iv.parse().ok()?;
                    (n, n)
                }
            };
            if a > b {
                return None;
            }
            ivs.push((a, b));
        }
    }
    Some(out)
}

/// Number of transactions in `source` that are not in `replica`.
pub fn mysql_gap(source: &str, replica: &str) -> Option<u64> {
    let s = parse_mysql_set(source)?;
    let r = parse_mysql_set(replica)?;
    let mut missing = 0u64;
    for (uuid, ivs) in &s {
        let have = r.get(uuid).map(Vec::as_slice).unwrap_or(&[]);
        for &(a, b) in ivs {
            let mut count = b - a + 1;
            for &(c, d) in have {
                let lo = a.max(c);
                let hi = b.min(d);
                if lo <= hi {
                    count = count.saturating_sub(hi - lo + 1);
                }
            }
            missing += count;
        }
    }
    Some(missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mariadb_gap_per_domain() {
        assert_eq!(mariadb_gap("0-1-100", "0-1-90"), Some(10));
        assert_eq!(mariadb_gap("0-1-100,1-2-5", "0-1-100"), Some(5));
        assert_eq!(mariadb_gap("0-1-100", "0-1-120"), Some(0));
        assert_eq!(mariadb_gap("", ""), Some(0));
        assert_eq!(mariadb_gap("0-1-5", ""), Some(5));
        assert_eq!(mariadb_gap("garbage", ""), None);
    }

    #[test]
    fn mysql_gap_counts_set_difference() {
        let u = "3E11FA47-71CA-11E1-9E33-C80AA9429562";
        assert_eq!(
            mysql_gap(&format!("{u}:1-10"), &format!("{u}:1-7")),
            Some(3)
        );
        assert_eq!(
            mysql_gap(&format!("{u}:1-10:20"), &format!("{u}:1-5:20")),
            Some(5)
        );
        assert_eq!(
            mysql_gap(
                &format!("{u}:1-3,aaaa:1-2"),
                &format!("{}:1-3", u.to_lowercase())
            ),
            Some(2)
        );
        assert_eq!(mysql_gap(&format!("{u}:tag1:1-4"), ""), Some(4));
        assert_eq!(mysql_gap("x:5-1", ""), None);
    }
}
