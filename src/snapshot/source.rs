//! Which instance an RDB is read from: the one rule, pure, over one sampling round.
//!
//! - **Only members.** The candidates are the target's members and nothing else: the local
//!   fleet's instances, the StatefulSet's pods, or exactly the `endpoints:` listed. An
//!   address that only `INFO` names (a replica a master lists, a master a replica follows)
//!   is never a source: it is used only to recognise a member.
//! - **A replica only when its master vouches for it.** What a replica says of itself
//!   (`role:slave`, `master_link_status:up`, an offset) is a claim any peer can make. A
//!   replica is a source only when a master among the members lists it (`slaveN:` with its
//!   address and port) as `state=online`, its replication id is that master's, and the offset
//!   it claims is not beyond the master's own `master_repl_offset` (read after the replica's,
//!   so an honest replica can never be ahead of it). Corroborated replicas are ranked by the
//!   offset their master acknowledged, freshest first, so the master never forks for a
//!   backup.
//! - **Then the master**, when the policy allows it (`source: replicaOrMaster` as a fallback,
//!   `source: master` always); `source: replica` never reads from it.
//!
//! The caller samples, resolves each member's host to its addresses, samples the masters
//! again, and tries the candidates in order.

use crate::observe::info::ReplicaState;
use crate::observe::{Info, InstanceSample, Role};
use crate::policy::SnapshotSource;
use crate::sample::redis::Endpoint;

/// One member as one round saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub endpoint: Endpoint,
    pub sample: InstanceSample,
    /// A master's `INFO` read again after every member's first answer: what it says of its
    /// replicas is then no older than what they said of themselves. `None`: not a master, or
    /// it did not answer again (its first answer is used).
    pub later: Option<Info>,
    /// The addresses a master may list this member under: its host as written, and what the
    /// host resolves to.
    pub addresses: Vec<String>,
}

impl Seen {
    /// A member whose host is its only address and whose masters are not sampled again.
    pub fn new(endpoint: Endpoint, sample: InstanceSample) -> Self {
        let addresses = vec![endpoint.host.clone()];
        Self { endpoint, sample, later: None, addresses }
    }

    /// What this member, as a master, says of its replicas.
    fn view(&self) -> Option<&Info> {
        self.later.as_ref().or(self.sample.info.as_ref())
    }
}

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
pub fn rank(round: &[Seen], source: SnapshotSource) -> Result<Vec<Candidate>, String> {
    let masters: Vec<&Seen> = round
        .iter()
        .filter(|s| s.sample.info.as_ref().is_some_and(|i| i.role == Role::Master))
        .collect();
    let mut replicas = Vec::new();
    let mut passed = Vec::new();
    for seen in round {
        let id = &seen.endpoint.id;
        let Some(info) = &seen.sample.info else {
            passed.push(format!("{id} {}", seen.sample.outcome));
            continue;
        };
        if info.role == Role::Master {
            continue;
        }
        match corroborate(seen, info, &masters) {
            Ok(acknowledged) => replicas.push((acknowledged, candidate(seen, info))),
            Err(why) => passed.push(format!("{id} {why}")),
        }
    }
    // Freshest (by what its master acknowledged) first; the id breaks ties so the choice is
    // stable.
    replicas.sort_by(|(a, x), (b, y)| b.cmp(a).then_with(|| x.endpoint.id.cmp(&y.endpoint.id)));
    let replicas = replicas.into_iter().map(|(_, c)| c);
    let masters = masters.iter().filter_map(|m| Some(candidate(m, m.sample.info.as_ref()?)));
    let ranked: Vec<Candidate> = match source {
        SnapshotSource::Replica => {
            passed.extend(masters.map(|m| {
                format!("{} is the master (`source: replica` never reads from it)", m.endpoint.id)
            }));
            replicas.collect()
        }
        SnapshotSource::ReplicaOrMaster => replicas.chain(masters).collect(),
        SnapshotSource::Master => {
            passed.extend(
                replicas.map(|r| format!("{} is a replica (`source: master`)", r.endpoint.id)),
            );
            masters.collect()
        }
    };
    if ranked.is_empty() {
        let why = if passed.is_empty() { "no instances".to_owned() } else { passed.join("; ") };
        return Err(why);
    }
    Ok(ranked)
}

fn candidate(seen: &Seen, info: &Info) -> Candidate {
    Candidate {
        endpoint: seen.endpoint.clone(),
        role: info.role,
        redis_version: info
            .server
            .redis_version
            .map(|v| format!("{}.{}.{}", v.major, v.minor, v.patch)),
        used_memory: info.memory.used_memory,
    }
}

/// The offset a master among `masters` acknowledged for the replica `seen`, when its claims
/// agree with that master's view of it; else why it is not trusted.
fn corroborate(seen: &Seen, info: &Info, masters: &[&Seen]) -> Result<u64, String> {
    if info.master_link_up != Some(true) {
        return Err("is a replica with its master link down".to_owned());
    }
    if info.syncing {
        return Err("is still syncing or loading".to_owned());
    }
    let port = seen.endpoint.port;
    let listed = masters.iter().find_map(|master| {
        let view = master.view()?;
        let entry = view.replication.replicas.iter().find(|r| {
            r.port == port && seen.addresses.iter().any(|a| a.eq_ignore_ascii_case(&r.ip))
        })?;
        Some((master, view, entry))
    });
    let Some((master, view, entry)) = listed else {
        return Err(format!(
            "claims to be a linked-up replica, but no master among the members lists it \
             (as {} port {port})",
            seen.addresses.join(" or ")
        ));
    };
    let master_id = &master.endpoint.id;
    let state = match entry.state {
        ReplicaState::Online => None,
        ReplicaState::WaitBgsave => Some("wait_bgsave"),
        ReplicaState::SendBulk => Some("send_bulk"),
        ReplicaState::Unknown => Some("in an unknown state"),
    };
    if let Some(state) = state {
        return Err(format!("is listed by the master {master_id} as {state}, not online"));
    }
    let (claimed, produced) =
        (info.replication.replica_repl_offset, view.replication.master_repl_offset);
    match (claimed, produced) {
        (Some(claimed), Some(produced)) if claimed > produced => {
            return Err(format!(
                "claims offset {claimed}, beyond the master {master_id}'s own {produced}"
            ));
        }
        (Some(_), Some(_)) => {}
        (None, _) => return Err("reports no replication offset".to_owned()),
        (Some(_), None) => {
            return Err(format!("cannot be checked: the master {master_id} reports no offset"));
        }
    }
    if let (Some(own), Some(masters)) =
        (info.replication.master_replid, view.replication.master_replid)
        && own != masters
    {
        return Err(format!("has replication id {own}, not the master {master_id}'s {masters}"));
    }
    Ok(entry.offset.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::{Info, Outcome};

    const REPLID: &str = "15b30630954f55b03528bf9ad9d3f7eb6b4260e8";

    fn seen(port: u16, info: Option<&str>) -> Seen {
        let endpoint = Endpoint::parse(&format!("10.0.0.1:{port}")).unwrap();
        let outcome = if info.is_some() { Outcome::Ok } else { Outcome::Refused };
        let sample =
            InstanceSample { id: endpoint.id.clone(), outcome, info: info.map(Info::parse) };
        Seen::new(endpoint, sample)
    }

    fn replica(port: u16, link: &str, offset: u64) -> Seen {
        let text = format!(
            "# Server\r\nredis_version:7.0.15\r\n# Replication\r\nrole:slave\r\n\
             master_link_status:{link}\r\nslave_repl_offset:{offset}\r\nmaster_replid:{REPLID}\r\n"
        );
        seen(port, Some(&text))
    }

    /// A master at offset `at` listing `(ip, port, state, acknowledged offset)`.
    fn master_listing(port: u16, at: u64, listed: &[(&str, u16, &str, u64)]) -> Seen {
        let mut text =
            format!("# Replication\r\nrole:master\r\nconnected_slaves:{}\r\n", listed.len());
        for (n, (ip, port, state, offset)) in listed.iter().enumerate() {
            text.push_str(&format!(
                "slave{n}:ip={ip},port={port},state={state},offset={offset},lag=0\r\n"
            ));
        }
        text.push_str(&format!("master_replid:{REPLID}\r\nmaster_repl_offset:{at}\r\n"));
        seen(port, Some(&text))
    }

    fn ports(ranked: &[Candidate]) -> Vec<u16> {
        ranked.iter().map(|c| c.endpoint.port).collect()
    }

    #[test]
    fn corroborated_replicas_come_first_freshest_by_the_masters_view() {
        let master = master_listing(
            1,
            100,
            &[
                ("10.0.0.1", 2, "online", 10),
                ("10.0.0.1", 3, "online", 99),
                ("10.0.0.1", 4, "online", 20),
            ],
        );
        // Port 2 claims more than port 4, but the master acknowledged less of it.
        let round = [master, replica(2, "up", 60), replica(3, "down", 99), replica(4, "up", 50)];
        let ranked = rank(&round, SnapshotSource::ReplicaOrMaster).unwrap();
        assert_eq!(ports(&ranked), [4, 2, 1]);
        assert_eq!(ranked[0].redis_version.as_deref(), Some("7.0.15"));
        assert_eq!(ports(&rank(&round, SnapshotSource::Replica).unwrap()), [4, 2]);
        assert_eq!(ports(&rank(&round, SnapshotSource::Master).unwrap()), [1]);
    }

    /// A peer claiming `role:slave`, link up and offset u64::MAX beside a real master and
    /// replica: the master does not list it, and its offset is beyond the master's anyway.
    #[test]
    fn a_replica_the_master_does_not_vouch_for_is_never_chosen() {
        let master = master_listing(1, 500, &[("10.0.0.1", 2, "online", 480)]);
        let round = [seen_fake(9, u64::MAX), master, replica(2, "up", 490)];
        let ranked = rank(&round, SnapshotSource::ReplicaOrMaster).unwrap();
        assert_eq!(ports(&ranked), [2, 1]);
        let only_fake = [master_listing(1, 500, &[]), seen_fake(9, u64::MAX)];
        let why = rank(&only_fake, SnapshotSource::Replica).unwrap_err();
        assert!(
            why.contains("10.0.0.1:9 claims to be a linked-up replica, but no master"),
            "{why}"
        );
        // Fallback to the master itself when nobody is corroborated.
        assert_eq!(ports(&rank(&only_fake, SnapshotSource::ReplicaOrMaster).unwrap()), [1]);
    }

    fn seen_fake(port: u16, offset: u64) -> Seen {
        seen(
            port,
            Some(&format!(
                "# Replication\r\nrole:slave\r\nmaster_link_status:up\r\nslave_repl_offset:{offset}\r\n"
            )),
        )
    }

    #[test]
    fn a_listed_replica_claiming_more_than_the_master_produced_is_not_trusted() {
        let master = master_listing(1, 500, &[("10.0.0.1", 2, "online", 480)]);
        let round = [master, replica(2, "up", u64::MAX)];
        let why = rank(&round, SnapshotSource::Replica).unwrap_err();
        assert!(
            why.contains(&format!(
                "claims offset {}, beyond the master 10.0.0.1:1's own 500",
                u64::MAX
            )),
            "{why}"
        );
    }

    #[test]
    fn a_replica_listed_but_not_online_or_of_another_history_is_not_trusted() {
        let master = master_listing(1, 500, &[("10.0.0.1", 2, "wait_bgsave", 0)]);
        let why = rank(&[master, replica(2, "up", 10)], SnapshotSource::Replica).unwrap_err();
        assert!(why.contains("listed by the master 10.0.0.1:1 as wait_bgsave"), "{why}");

        let master = master_listing(1, 500, &[("10.0.0.1", 2, "online", 400)]);
        let other = seen(
            2,
            Some(
                "# Replication\r\nrole:slave\r\nmaster_link_status:up\r\nslave_repl_offset:400\r\n\
                 master_replid:0000000000000000000000000000000000000000\r\n",
            ),
        );
        let why = rank(&[master, other], SnapshotSource::Replica).unwrap_err();
        assert!(why.contains("has replication id 0000"), "{why}");
    }

    /// The master's view names an address that is not a member: it is never a candidate, and
    /// a member is recognised only by an address it is known by.
    #[test]
    fn only_members_are_candidates_whatever_info_names() {
        let master = master_listing(
            1,
            500,
            &[("10.9.9.9", 6379, "online", 500), ("192.168.1.5", 2, "online", 450)],
        );
        let mut named = replica(2, "up", 450);
        let round = [master.clone(), named.clone()];
        // 10.0.0.1:2 is listed only as 192.168.1.5:2: not recognised...
        assert!(rank(&round, SnapshotSource::Replica).is_err());
        // ...until that address is one its host resolves to.
        named.addresses.push("192.168.1.5".to_owned());
        let ranked = rank(&[master, named], SnapshotSource::ReplicaOrMaster).unwrap();
        assert_eq!(ports(&ranked), [2, 1]);
        assert!(ranked.iter().all(|c| c.endpoint.host == "10.0.0.1"), "{ranked:?}");
    }

    /// The master's later answer is the one that vouches: a replica sampled after the
    /// master's first answer may be ahead of it, never of its second.
    #[test]
    fn the_masters_later_view_is_used() {
        let mut master = master_listing(1, 100, &[("10.0.0.1", 2, "online", 100)]);
        let round = [master.clone(), replica(2, "up", 150)];
        assert!(rank(&round, SnapshotSource::Replica).is_err());
        master.later = master_listing(1, 160, &[("10.0.0.1", 2, "online", 150)]).sample.info;
        assert_eq!(
            ports(&rank(&[master, replica(2, "up", 150)], SnapshotSource::Replica).unwrap()),
            [2]
        );
    }

    #[test]
    fn no_candidate_says_why_for_each_instance() {
        let round = [master_listing(1, 0, &[]), replica(2, "down", 5), seen(3, None)];
        let why = rank(&round, SnapshotSource::Replica).unwrap_err();
        assert!(why.contains("10.0.0.1:2 is a replica with its master link down"), "{why}");
        assert!(why.contains("10.0.0.1:1 is the master"), "{why}");
        assert!(why.contains("10.0.0.1:3"), "{why}");
    }
}
