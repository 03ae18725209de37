//! A fixed list of `host:port` endpoints: instances someone else runs. The daemon samples and
//! decides for them and reports every action it would take; it cannot create or remove
//! instances, and without a place to record a master durably it changes no roles.
//!
//! The members are exactly the endpoints listed, nothing more: an address an instance's
//! `INFO` names (a replica its master lists, the master a replica follows) is never added,
//! so it is never sampled as a member nor read from as a snapshot source.

use std::future::Future;

use super::{Cluster, ClusterError, MasterRecord, Member};
use crate::sample::redis::Endpoint;

pub struct StaticEndpoints {
    members: Vec<Member>,
}

impl StaticEndpoints {
    pub fn new(endpoints: Vec<Endpoint>) -> Self {
        let members = endpoints
            .into_iter()
            .enumerate()
            .map(|(ordinal, endpoint)| Member {
                id: endpoint.id.clone(),
                endpoint,
                ordinal: u16::try_from(ordinal).unwrap_or(u16::MAX),
                gone: None,
            })
            .collect();
        Self { members }
    }

    fn unsupported(action: &'static str) -> ClusterError {
        ClusterError::Unsupported { target: "endpoints", action }
    }
}

impl Cluster for StaticEndpoints {
    fn members(&self) -> impl Future<Output = Result<Vec<Member>, ClusterError>> + Send {
        std::future::ready(Ok(self.members.clone()))
    }

    fn replicas(&self) -> impl Future<Output = Result<u16, ClusterError>> + Send {
        std::future::ready(Ok(u16::try_from(self.members.len()).unwrap_or(u16::MAX)))
    }

    fn scale(&self, _from: u16, _to: u16) -> impl Future<Output = Result<(), ClusterError>> + Send {
        std::future::ready(Err(Self::unsupported("scale")))
    }

    fn recorded_master(
        &self,
    ) -> impl Future<Output = Result<Option<MasterRecord>, ClusterError>> + Send {
        std::future::ready(Ok(None))
    }

    fn record_master(
        &self,
        _record: MasterRecord,
    ) -> impl Future<Output = Result<(), ClusterError>> + Send {
        std::future::ready(Err(Self::unsupported("record a master")))
    }

    fn promote(
        &self,
        _member: &Member,
        _epoch: u64,
    ) -> impl Future<Output = Result<(), ClusterError>> + Send {
        std::future::ready(Err(Self::unsupported("promote")))
    }

    fn switch_over(
        &self,
        _from: &Member,
        _to: &Member,
        _epoch: u64,
    ) -> impl Future<Output = Result<(), ClusterError>> + Send {
        std::future::ready(Err(Self::unsupported("switch over")))
    }

    fn repoint(
        &self,
        _member: &Member,
        _master: &Member,
    ) -> impl Future<Output = Result<(), ClusterError>> + Send {
        std::future::ready(Err(Self::unsupported("repoint")))
    }
}
