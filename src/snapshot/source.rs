//! Which instance an RDB is read from. A replica with its link up is preferred, freshest
//! first, so the master never forks for a backup; the master is used only when the policy
//! allows it (`source: replicaOrMaster` as a fallback, `source: master` always). Pure: it
//! ranks one sampling round, and the caller tries the candidates in order.

use crate::observe::{InstanceSample, Role};
use crate::policy::SnapshotSource;
use crate::sample::redis::Endpoint;

/// An instance worth asking for an RDB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub endpoint: Endpoint,
    pub role: Role,
    /// `7.0.15`, for the manifest.
    pub redis_version: Option<String>,
    /// `used_memory`: an upper bound on the RDB's size, to size upload parts.
    pub used_memory: Option<u64>,
}

/// Candidates in the order to try them, or why there are none (every instance named with
/// the reason it was passed over).
pub fn rank(
    round: &[(Endpoint, InstanceSample)],
    source: SnapshotSource,
) -> Result<Vec<Candidate>, String> {
    let mut replicas = Vec::new();
    let mut masters = Vec::new();
    let mut passed = Vec::new();
    for (endpoint, sample) in round {
        let Some(info) = &sample.info else {
            passed.push(format!("{} {}", endpoint.id, sample.outcome));
            continue;
        };
        let candidate = Candidate {
            endpoint: endpoint.clone(),
            role: info.role,
            redis_version: info
                .server
                .redis_version
                .map(|v| format!("{}.{}.{}", v.major, v.minor, v.patch)),
            used_memory: info.memory.used_memory,
        };
        match info.role {
            Role::Master => masters.push(candidate),
            Role::Replica if info.master_link_up != Some(true) => {
                passed.push(format!("{} is a replica with its master link down", endpoint.id));
            }
            Role::Replica if info.syncing => {
                passed.push(format!("{} is still syncing or loading", endpoint.id));
            }
            Role::Replica => {
                let offset = info.replication.replica_repl_offset.unwrap_or(0);
                replicas.push((offset, candidate));
            }
        }
    }
    // Freshest replica first; the id breaks ties so the choice is stable.
    replicas.sort_by(|(a, x), (b, y)| b.cmp(a).then_with(|| x.endpoint.id.cmp(&y.endpoint.id)));
    let replicas = replicas.into_iter().map(|(_, c)| c);
    let ranked: Vec<Candidate> = match source {
        SnapshotSource::Replica => {
            passed.extend(masters.iter().map(|m| {
                format!("{} is the master (`source: replica` never reads from it)", m.endpoint.id)
            }));
            replicas.collect()
        }
        SnapshotSource::ReplicaOrMaster => replicas.chain(masters).collect(),
        SnapshotSource::Master => {
            passed.extend(
                replicas.map(|r| format!("{} is a replica (`source: master`)", r.endpoint.id)),
            );
            masters
        }
    };
    if ranked.is_empty() {
        let why = if passed.is_empty() { "no instances".to_owned() } else { passed.join("; ") };
        return Err(why);
    }
    Ok(ranked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::{Info, Outcome};

    fn sample(port: u16, info: Option<&str>) -> (Endpoint, InstanceSample) {
        let endpoint = Endpoint::parse(&format!("10.0.0.1:{port}")).unwrap();
        let outcome = if info.is_some() { Outcome::Ok } else { Outcome::Refused };
        let sample =
            InstanceSample { id: endpoint.id.clone(), outcome, info: info.map(Info::parse) };
        (endpoint, sample)
    }

    fn replica(port: u16, link: &str, offset: u64) -> (Endpoint, InstanceSample) {
        let text = format!(
            "# Server\r\nredis_version:7.0.15\r\n# Replication\r\nrole:slave\r\n\
             master_link_status:{link}\r\nslave_repl_offset:{offset}\r\n"
        );
        sample(port, Some(&text))
    }

    fn master(port: u16) -> (Endpoint, InstanceSample) {
        sample(port, Some("# Replication\r\nrole:master\r\n"))
    }

    fn ports(ranked: &[Candidate]) -> Vec<u16> {
        ranked.iter().map(|c| c.endpoint.port).collect()
    }

    #[test]
    fn linked_up_replicas_come_first_freshest_first() {
        let round = [master(1), replica(2, "up", 10), replica(3, "down", 99), replica(4, "up", 20)];
        let ranked = rank(&round, SnapshotSource::ReplicaOrMaster).unwrap();
        assert_eq!(ports(&ranked), [4, 2, 1]);
        assert_eq!(ranked[0].redis_version.as_deref(), Some("7.0.15"));
        assert_eq!(ports(&rank(&round, SnapshotSource::Replica).unwrap()), [4, 2]);
        assert_eq!(ports(&rank(&round, SnapshotSource::Master).unwrap()), [1]);
    }

    #[test]
    fn no_candidate_says_why_for_each_instance() {
        let round = [master(1), replica(2, "down", 5), sample(3, None)];
        let why = rank(&round, SnapshotSource::Replica).unwrap_err();
        assert!(why.contains("10.0.0.1:2 is a replica with its master link down"), "{why}");
        assert!(why.contains("10.0.0.1:1 is the master"), "{why}");
        assert!(why.contains("10.0.0.1:3"), "{why}");
    }
}
